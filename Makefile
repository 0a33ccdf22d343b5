# gpuvm top-level build. `make demo` and `make test` install what is missing (tools/deps.sh),
# build the kernel and QEMU into the cache ($GPUVM_CACHE, default ~/.cache/gpuvm) and the rest
# into build/. Inside the kernel's build system this file is not used (Kbuild is).
SHELL := /bin/bash
export GPUVM_CACHE ?= $(HOME)/.cache/gpuvm
BUILD := $(CURDIR)/build
LIBCLANG_PATH := /usr/lib/llvm-19/lib
BINDGEN := $(GPUVM_CACHE)/tools/bin/bindgen
STATIC_TARGET := x86_64-unknown-linux-gnu
# Cargo's output folder (CARGO_TARGET_DIR if set, as cargo itself does).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
STATIC_BIN := $(TARGET_DIR)/$(STATIC_TARGET)/release
# Read the cached kernel build folder / QEMU wrapper found by the kernel and qemu targets.
KB = $$(cat $(BUILD)/kbuild.path)
KMAKE = $(MAKE) --no-print-directory -C $(KB) LLVM= RUSTC=/usr/bin/rustc BINDGEN=$(BINDGEN) LIBCLANG_PATH=$(LIBCLANG_PATH)

# Tests run in the host VM by `make test` (selftests/vm/tests/NAME.sh; NAME@PARAM passes PARAM).
WORKLOADS := hotspot lud srad needle mmul
VM_TESTS := module-binds-gpu model-doorbell-msi $(WORKLOADS:%=workload@native:%) native-corrupt-detected vgpu-lifecycle vgpu-config-space vgpu-irqs vgpu-bad-ioctl vgpu-stress $(WORKLOADS:%=workload@vgpu:%) vgpu-naive-lazy vgpu-lazy-inflight vgpu-doorbell-msi vgpu-multi sched-policy-switch sched-weights sched-short-latency isolation-pagetable isolation-bar-remap isolation-registers isolation-channels isolation-physical-copy isolation-scrub isolation-irq-routing isolation-exhaustion isolation-pointers-4g isolation-runaway isolation-teardown nested-vgpu gpuvmctl mdevctl libvirt-mdev

.PHONY: all deps kernel qemu module warn-module model guest initramfs host-test vm-test test demo bench bench-sched clean
all: module model guest

deps:
	@mkdir -p $(BUILD)
	@bash tools/deps.sh

kernel: deps
	@bash tools/kernel.sh host-vm > $(BUILD)/kbuild.path.tmp && mv $(BUILD)/kbuild.path.tmp $(BUILD)/kbuild.path
	@bash tools/kernel.sh nested-guest > $(BUILD)/l2kbuild.path.tmp && mv $(BUILD)/l2kbuild.path.tmp $(BUILD)/l2kbuild.path

# Also the rootfs as an ext4 image: the host VM's disk, from which nested-vgpu runs QEMU.
qemu: deps
	@bash tools/qemu.sh > $(BUILD)/qemu.path.tmp && mv $(BUILD)/qemu.path.tmp $(BUILD)/qemu.path
	@bash tools/rootfs-image.sh $$(cat $(BUILD)/qemu.path) > $(BUILD)/qemu-image.path.tmp && mv $(BUILD)/qemu-image.path.tmp $(BUILD)/qemu-image.path

# The bindings are regenerated each build but replaced only when they change, so an unchanged
# kernel does not force a module rebuild.
module: kernel
	@bash rust/gen_bindings.sh $(KB) $(BUILD)/vfio_mdev.rs
	@mkdir -p rust/generated; cmp -s $(BUILD)/vfio_mdev.rs rust/generated/vfio_mdev.rs || cp $(BUILD)/vfio_mdev.rs rust/generated/vfio_mdev.rs
	@$(KMAKE) M=$(CURDIR) modules
	@echo "[gpuvm] module: $(CURDIR)/gpuvm.ko"

warn-module: kernel
	@$(KMAKE) M=$(CURDIR)/selftests/vm/warn_test modules

model: deps
	@cargo build -q --release -p gf100-model

# Static binaries for the VM's busybox initramfs (gpuvmctl too: the VM tests run it).
guest: deps
	@RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release --target $(STATIC_TARGET) -p gpuvm-guest-driver -p gpuvm-vfio-client -p gpuvmctl --bins

initramfs: module warn-module guest kernel
	@rm -rf $(BUILD)/initramfs && mkdir -p $(BUILD)/initramfs/{bin,lib/modules,tests,proc,sys,dev,tmp}
	@cp /bin/busybox $(BUILD)/initramfs/bin/busybox && ln -s busybox $(BUILD)/initramfs/bin/sh
	@cp selftests/vm/init $(BUILD)/initramfs/init && chmod +x $(BUILD)/initramfs/init
	@cp selftests/vm/tests/*.sh $(BUILD)/initramfs/tests/
	@cp gpuvm.ko selftests/vm/warn_test/gpuvm_warn_test.ko $(KB)/drivers/vfio/mdev/mdev.ko \
	    $(KB)/samples/vfio-mdev/mtty.ko $(BUILD)/initramfs/lib/modules/
	@find $(STATIC_BIN) -maxdepth 1 -type f -executable -exec cp {} $(BUILD)/initramfs/bin/ \;
	@# The nested guest's kernel and initramfs (busybox, its /init, gpuvm-bench) under /l2.
	@rm -rf $(BUILD)/initramfs-l2 && mkdir -p $(BUILD)/initramfs-l2/{bin,proc,sys,dev,tmp} $(BUILD)/initramfs/l2
	@cp /bin/busybox $(STATIC_BIN)/gpuvm-bench $(BUILD)/initramfs-l2/bin/ && ln -s busybox $(BUILD)/initramfs-l2/bin/sh
	@cp selftests/vm/l2/init $(BUILD)/initramfs-l2/init && chmod +x $(BUILD)/initramfs-l2/init
	@(cd $(BUILD)/initramfs-l2 && find . | cpio -o -H newc --quiet | gzip -1) > $(BUILD)/initramfs/l2/initrd.gz
	@cp $$(cat $(BUILD)/l2kbuild.path)/vmlinux $(BUILD)/initramfs/l2/vmlinux

VM_ENV = KBUILD=$(KB) QEMU=$$(cat $(BUILD)/qemu.path) MODEL_BIN=$(TARGET_DIR)/release/gf100-model \
	INITRAMFS_DIR=$(BUILD)/initramfs OUT_DIR=$(BUILD)/vm \
	VM_EXTRA_ARGS="-drive file=$$(cat $(BUILD)/qemu-image.path),if=none,id=qemuroot,format=raw,readonly=on -device virtio-blk-pci,drive=qemuroot,addr=0x10"

# Through a log file, not a pipe, so no process a test leaves behind can keep make waiting.
host-test: deps
	@bash tools/host-test.sh $(BUILD)/host-test.log

vm-test: initramfs model qemu
	@$(VM_ENV) bash selftests/vm/suite.sh $(VM_TESTS)

test: host-test vm-test

demo: initramfs model qemu
	@$(VM_ENV) bash selftests/vm/demo.sh

# A benchmark, not a test: prints per-phase times and vGPU/native ratios measured in one run.
bench: initramfs model qemu
	@$(VM_ENV) VM_TIMEOUT=1800 TEST_TIMEOUT=1700 bash selftests/vm/bench.sh

# The schedulers over the mediated transport in process (no VM): FIFO/CREDIT/BAND at 1-8
# vGPUs, F, throughput, weighted share error, short-job latency; build/bench/sched.{md,json}
# and PNG plots. SCHED_WINDOW_MS sets each run's measuring window.
SCHED_WINDOW_MS ?= 1000
bench-sched: deps
	@cargo build -q --release -p gpuvm-guest-driver --bin gpuvm-bench-sched
	@mkdir -p $(BUILD)/bench
	@$${CARGO_TARGET_DIR:-target}/release/gpuvm-bench-sched $(BUILD)/bench $(SCHED_WINDOW_MS)
	@$$(bash selftests/bench/pyenv.sh) selftests/bench/plot_sched.py $(BUILD)/bench

clean:
	-@[ -f $(BUILD)/kbuild.path ] && $(KMAKE) M=$(CURDIR) clean
	rm -rf $(BUILD) rust/generated target
