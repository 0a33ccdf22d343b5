//! Every workload against the in-process model, with small sizes; plus the checker failing on
//! one corrupted element, the polled fence path, and the VFIO transport's error path.

use gpuvm_guest_driver::driver::{ChannelOpts, Gpu, SUBC_COPY};
use gpuvm_guest_driver::record::Phase;
use gpuvm_uapi::gf100::{copy, pfifo};
use gpuvm_guest_driver::transport::model::ModelTransport;
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use std::io;

fn opts() -> Opts {
    Opts { size: Size::Small, ..Opts::default() }
}

fn run(name: &str, o: &Opts) -> gpuvm_guest_driver::record::Record {
    let gpu = ModelTransport::new(256).expect("model").gpu().clone();
    let open = move || -> io::Result<Box<dyn Transport>> { Ok(Box::new(ModelTransport::with_gpu(gpu.clone()))) };
    workloads::run(name, &open, o)
}

fn assert_ok(name: &str) {
    let r = run(name, &opts());
    let j = r.to_json();
    assert!(r.ok, "{name} failed: {j}");
    assert!(r.phases.get(Phase::Init).as_nanos() > 0, "{j}");
    assert!(r.bars[0].writes > 0 && r.bars[2].writes > 0, "BAR0/BAR3 accesses counted: {j}");
    assert!(j.starts_with(&format!("{{\"workload\":\"{name}\"")) && !j.contains('\n'));
}

#[test]
fn hotspot() {
    assert_ok("hotspot");
}
#[test]
fn lud() {
    assert_ok("lud");
}
#[test]
fn srad() {
    assert_ok("srad");
}
#[test]
fn needle() {
    assert_ok("needle");
}
#[test]
fn mmul() {
    assert_ok("mmul");
}
#[test]
fn init_close() {
    assert_ok("init_close");
}
#[test]
fn malloc_free() {
    assert_ok("malloc_free");
}
#[test]
fn copy() {
    let r = run("copy", &opts());
    assert!(r.ok, "{}", r.to_json());
    let has = |k: &str| r.extra.iter().any(|(n, _)| n == k);
    assert!(has("htod_4k_us") && has("dtoh_1024k_us"), "per-size figures present");
    assert!(r.bars[1].writes > 0 && r.bars[1].reads > 0, "the small copies went through BAR1");
}
#[test]
fn launch_latency() {
    assert_ok("launch_latency");
}
#[test]
fn fence_latency() {
    assert_ok("fence_latency");
}

/// One flipped element must make each checked workload fail and name the element.
#[test]
fn corrupt_one_fails() {
    let o = Opts { corrupt_one: true, ..opts() };
    for name in ["mmul", "needle", "copy"] {
        let r = run(name, &o);
        assert!(!r.ok, "{name} with a corrupted element passed");
        let e = r.error.unwrap();
        assert!(e.starts_with("mismatch in") && e.contains("1 of") && e.contains("got"), "{name}: {e}");
    }
}

/// Fence waits without interrupts (the poll fallback) give the same results.
#[test]
fn polled_fences() {
    let o = Opts { use_irq: false, ..opts() };
    for name in ["hotspot", "fence_latency"] {
        let r = run(name, &o);
        assert!(r.ok, "{}", r.to_json());
        assert!(r.device.contains("irq=None"), "{}", r.device);
    }
}

#[test]
fn unknown_workload_is_an_error() {
    let r = run("nope", &opts());
    assert!(!r.ok && r.error.unwrap().contains("unknown workload"));
}

/// Without a VFIO device the transport fails cleanly (this host has none).
#[test]
fn vfio_open_missing_device_errors() {
    for p in [VfioPath::Auto, VfioPath::NoIommu, VfioPath::Group, VfioPath::Cdev] {
        let e = VfioTransport::open(VfioTarget::Pci("0000:ff:1f.7".into()), p).err().expect("no such device");
        assert!(!e.to_string().is_empty());
        let e = VfioTransport::open(VfioTarget::Mdev("00000000-0000-0000-0000-000000000000".into()), p).err().expect("no such mdev");
        assert!(!e.to_string().is_empty());
    }
}

/// The driver as a host driver on the bare model: a channel whose RAMFC opens the
/// physical-copy gate copies from a physical VRAM address; one with nouveau's plain RAMFC
/// gets a PBDMA error for the same copy and nothing moves.
#[test]
fn physical_copy_needs_the_gate_in_ramfc() {
    let gpu = ModelTransport::new(256).expect("model").gpu().clone();
    let data: Vec<u8> = (0..0x1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let phys_read = copy::ADDR_SRC_PHYSICAL | copy::PHYS_TARGET_LOCAL_FB << copy::ADDR_SRC_TARGET_SHIFT;
    for phys_copy in [true, false] {
        let mut g = Gpu::open_opts(Box::new(ModelTransport::with_gpu(gpu.clone())), 0, false, ChannelOpts { phys_copy }).expect("open");
        let mut m = g.malloc(0x1000).expect("malloc");
        g.memcpy_htod(&mut m, 0, &data).expect("upload");
        let h = g.malloc_host(0x1000).expect("host buffer");
        g.raw_ce_copy(phys_read, h.va, m.vram, 0x1000).expect("push");
        let r = g.sync();
        if phys_copy {
            assert!(r.is_ok(), "{:?}", r.err());
            assert_eq!(h.as_slice(), &data[..], "read through the physical address");
            g.free_host(h).expect("free");
            g.free(m).expect("free");
            g.close().expect("teardown");
        } else {
            let e = r.expect_err("refused").0;
            assert!(e.contains("PBDMA0 intr 0x200000") && e.contains(&format!("method {:#x}", copy::LAUNCH_DMA | SUBC_COPY << pfifo::PBDMA_METHOD_SUBCH_SHIFT)), "{e}");
            assert!(h.as_slice().iter().all(|&b| b == 0), "nothing copied");
        }
    }
}
