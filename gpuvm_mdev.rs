// SPDX-License-Identifier: GPL-2.0
//! gpuvm: full GPU virtualization of an NVIDIA Fermi GF100 as an mdev/VFIO parent driver.
//!
//! The crate root: the PCI driver that owns each GF100 it finds, makes it an mdev parent
//! offering vGPU types by share (`gpuvm-1`, `-2`, `-4`, `-8`), and the per-GPU and per-vGPU
//! sysfs files. The vGPU device itself is in `vgpu.rs`; hardware facts come from `uapi/`
//! (shared with the GF100 model and the guest driver); FFI lives only in `rust/`.

use core::{
    fmt::Write,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};
use gf100::{pfb, pfifo, pmc};
use kernel::{
    device::Core,
    io::{poll::read_poll_timeout, Io},
    new_mutex, pci,
    prelude::*,
    time::{Delta, Instant, Monotonic},
    str::Formatter,
    sync::{aref::ARef, Arc, Mutex},
};
use host_pool::HostPool;
use partition::{Pools, Slice, UnitMap, SHARES, UNITS};
use rust_sysfs::{Attr, AttrGroup, AttrList, BoundDriverData, DeviceAttribute, GroupList, GroupsRegistration};

// uapi/ is the shared hardware contract; the module uses the part it needs.
#[path = "uapi/gf100.rs"]
#[allow(dead_code, unreachable_pub)]
mod gf100;
#[path = "uapi/pci_ids.rs"]
#[allow(dead_code, unreachable_pub)]
mod pci_ids;

#[path = "shadow/host_pool.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_pool;
#[path = "shadow/memory.rs"]
#[allow(dead_code, unreachable_pub)]
mod memory;
#[path = "shadow/pagetable.rs"]
#[allow(dead_code, unreachable_pub)]
mod pagetable;
#[path = "shadow/shadow_vm.rs"]
#[allow(dead_code, unreachable_pub)]
mod shadow_vm;
#[path = "shadow/channel.rs"]
#[allow(dead_code, unreachable_pub)]
mod channel;
#[path = "shadow/regs.rs"]
#[allow(dead_code, unreachable_pub)]
mod regs;
#[path = "shadow/sync_policy.rs"]
#[allow(dead_code, unreachable_pub)]
mod sync_policy;
#[path = "shadow/vregs.rs"]
#[allow(dead_code, unreachable_pub)]
mod vregs;
#[path = "shadow/partition.rs"]
#[allow(dead_code, unreachable_pub)]
mod partition;
#[path = "shadow/host_init.rs"]
#[allow(dead_code, unreachable_pub)]
mod host_init;
#[path = "shadow/pci_config.rs"]
#[allow(dead_code, unreachable_pub)]
mod pci_config;

#[path = "rust/bindings.rs"]
mod bindings;
#[path = "rust/eventfd.rs"]
mod eventfd;
#[path = "rust/irq.rs"]
mod irq;
#[path = "rust/mdev.rs"]
mod mdev;
#[path = "rust/sysfs.rs"]
mod rust_sysfs;
#[path = "rust/vfio.rs"]
mod vfio;

mod fullvirt;
mod host_mem;
mod vgpu;

module! {
    type: GpuvmModule,
    name: "gpuvm",
    authors: ["gpuvm developers"],
    description: "Full virtualization of NVIDIA Fermi GF100 GPUs as mdev/VFIO vGPUs",
    license: "GPL",
}

/// VRAM the host keeps for its own structures (instance blocks, BAR page tables, USERD,
/// shadow page tables); the rest is cut into vGPU units.
const HOST_VRAM_RESERVED: u64 = 64 << 20;
/// Channels 0..GUEST_CHANNELS go to vGPUs; the rest stay with the host.
const GUEST_CHANNELS: u32 = 120;

/// What every vGPU of a GPU shares: identity, geometry, and the allocation map.
#[pin_data]
pub(crate) struct GpuShared {
    pdev: ARef<pci::Device>,
    pub(crate) boot0: u32,
    vram_bytes: u64,
    pub(crate) pools: Pools,
    #[pin]
    units: Mutex<UnitMap>,
    vgpus: AtomicU32,
    bar0: pci::DevresBar<{ gf100::pci::BAR0_SIZE as usize }>,
    /// The host's BAR3: an identity map of host VRAM `[0, bar3_mapped)`.
    bar3: pci::DevresBar<{ gf100::pci::BAR3_SIZE as usize }>,
    bar3_mapped: u64,
    /// The PRAMIN window (BAR0 0x700000) is one per GPU: whoever moves it holds this.
    #[pin]
    pramin: Mutex<host_mem::PraminWindow>,
    /// Host VRAM for shadow structures.
    #[pin]
    pool: Mutex<HostPool>,
    /// The host's BAR1: its USERD area, where doorbells are rung.
    bar1: pci::DevresBar<{ gf100::pci::BAR1_SIZE as usize }>,
    /// Interrupts the host handled (all causes).
    interrupts: AtomicU64,
    /// Time base of the vGPUs' PTIMER.
    epoch: Instant<Monotonic>,
    /// Shadow page tables sync at the next use instead of at the guest's TLB flush.
    lazy_shadow: AtomicBool,
    /// The one host runlist all vGPUs share.
    #[pin]
    runlist: Mutex<HostRunlist>,
    /// Live vGPUs, for interrupt delivery.
    #[pin]
    vgpu_list: Mutex<KVec<ARef<vfio::Device<vgpu::Vgpu>>>>,
    /// Events the hard-IRQ half recorded for the thread to deliver.
    pending_nonstall: AtomicBool,
    pending_faults: AtomicU32,
    fault_records: [FaultRecord; FAULT_UNITS],
}

/// Fault units whose records the host keeps (the PFIFO VM_FAULT unit bits).
const FAULT_UNITS: usize = 32;

/// One MMU fault as the hard-IRQ half read it (atomics: written there, read by the thread).
#[derive(Default)]
struct FaultRecord {
    inst: AtomicU64,
    va: AtomicU64,
    info: AtomicU32,
}

/// The host runlist: each vGPU's part (indexed by its first unit), double-buffered in host
/// VRAM like nouveau does, so the GPU never reads a list being rewritten.
struct HostRunlist {
    parts: [Option<channel::RunlistPart>; UNITS as usize],
    bufs: [u64; 2],
    next: usize,
}

/// Runlist entries one buffer holds (every channel once).
const RUNLIST_CAPACITY: u32 = gf100::pfifo::CHANNELS;

impl GpuShared {
    /// Replaces one vGPU's part of the host runlist and submits the merged list.
    pub(crate) fn commit_runlist(&self, part: channel::RunlistPart) {
        let mut rl = self.runlist.lock();
        if let Some(slot) = rl.parts.get_mut(part.slice.first_unit as usize) {
            *slot = (!part.channels.is_empty()).then_some(part);
        }
        let mut merged = [channel::RunlistPart { slice: part.slice, channels: channel::ChannelSet::default() }; UNITS as usize];
        let mut n_parts = 0;
        for p in rl.parts.iter().flatten() {
            merged[n_parts] = *p;
            n_parts += 1;
        }
        let buf = rl.bufs[rl.next];
        rl.next ^= 1;
        let entries = {
            let mut vram = host_mem::HostVram::new(self);
            channel::write_host_runlist(&mut vram, buf, RUNLIST_CAPACITY, &merged[..n_parts])
        };
        {
            // The access guard is an RCU read-side section: released before polling sleeps.
            let Some(bar0) = self.bar0.try_access() else { return };
            let base = (buf >> 12) as u32 & pfifo::RUNLIST_ADDR_MASK | gf100::target::VRAM << pfifo::RUNLIST_TARGET_SHIFT;
            let _ = bar0.try_write32(base, pfifo::RUNLIST_BASE as usize);
            let _ = bar0.try_write32(pfifo::RUNLIST_COMMIT_UNK | entries, pfifo::RUNLIST_SUBMIT as usize);
        }
        // TIMEOUT: PFIFO takes a new runlist in microseconds; nouveau gives it 2 s. Past that
        // the GPU keeps the previous list, which the next commit replaces.
        let done = read_poll_timeout(
            || self.bar0.try_access().ok_or(ENODEV)?.try_read32(pfifo::RUNLIST_STATUS as usize),
            |status| status & pfifo::RUNLIST_STATUS_PENDING == 0,
            HOST_POLL_INTERVAL,
            RUNLIST_TIMEOUT,
        );
        if let Err(e) = done {
            dev_warn!(self.pdev.as_ref(), "runlist update ({} entries) not taken by PFIFO: {:?}\n", entries, e);
        }
    }

    fn add_vgpu(&self, dev: ARef<vfio::Device<vgpu::Vgpu>>) -> Result {
        self.vgpu_list.lock().push(dev, GFP_KERNEL)?;
        Ok(())
    }

    fn remove_vgpu(&self, dev: &vfio::Device<vgpu::Vgpu>) {
        let mut list = self.vgpu_list.lock();
        if let Some(i) = list.iter().position(|d| core::ptr::eq(&**d, dev)) {
            let _ = list.remove(i);
        }
    }
}

impl irq::Handler for GpuShared {
    /// Acknowledges what is pending and records what the vGPUs must hear about.
    fn handle(&self) -> irq::IrqReturn {
        let Some(bar0) = self.bar0.try_access() else { return irq::IrqReturn::None };
        let m = HostBar0(&bar0);
        let rd = |off: u32| host_init::Mmio::rd(&m, off);
        let wr = |off: u32, v: u32| host_init::Mmio::wr(&m, off, v);
        let pending = rd(pmc::INTR_HOST);
        if pending == 0 || pending == gf100::bad::UNIT_DISABLED {
            return irq::IrqReturn::None;
        }
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        let mut wake = false;
        if pending & pmc::INTR_SOFTWARE != 0 {
            wr(pmc::INTR_HOST, 0);
        }
        if pending & pmc::INTR_PFIFO != 0 {
            let causes = rd(pfifo::INTR);
            if causes & pfifo::INTR_ENGINE != 0 {
                let units = rd(pfifo::ENGINE_INTR_UNITS);
                for n in 0..32 {
                    if units & (1 << n) != 0 {
                        let v = rd(pfifo::engine_intr(n));
                        wr(pfifo::engine_intr(n), v);
                    }
                }
                self.pending_nonstall.store(true, Ordering::Release);
                wake = true;
            }
            if causes & pfifo::INTR_VM_FAULT != 0 {
                let units = rd(pfifo::VM_FAULT_UNITS);
                for (u, rec) in self.fault_records.iter().enumerate() {
                    let u = u as u32;
                    if units & (1 << u) == 0 {
                        continue;
                    }
                    rec.inst.store(u64::from(rd(pfifo::vm_fault_inst(u))) << 12, Ordering::Relaxed);
                    rec.va.store(u64::from(rd(pfifo::vm_fault_addr_lo(u))) | u64::from(rd(pfifo::vm_fault_addr_hi(u))) << 32, Ordering::Relaxed);
                    rec.info.store(rd(pfifo::vm_fault_info(u)), Ordering::Relaxed);
                }
                wr(pfifo::VM_FAULT_UNITS, units);
                self.pending_faults.fetch_or(units, Ordering::Release);
                wake = true;
            }
            if causes & pfifo::INTR_PBDMA != 0 {
                let units = rd(pfifo::PBDMA_INTR_UNITS);
                wr(pfifo::PBDMA_INTR_UNITS, units);
            }
            wr(pfifo::INTR, causes);
        }
        if pending & pmc::INTR_PGRAPH != 0 {
            let g = rd(gf100::pgraph::INTR);
            wr(gf100::pgraph::INTR, g);
        }
        // MSI is sent on a rising edge of the interrupt line: a cause that arrived after the
        // reads above keeps the line high without a new message. Re-arming makes the GPU send
        // one if the line is still asserted (nouveau does the same at the end of its handler).
        wr(gf100::pci::BAR0_MSI_REARM, 0);
        if wake {
            irq::IrqReturn::WakeThread
        } else {
            irq::IrqReturn::Handled
        }
    }

    /// Delivers recorded events to the vGPUs (process context: their state locks sleep).
    fn thread(&self) {
        let nonstall = self.pending_nonstall.swap(false, Ordering::Acquire);
        let faults = self.pending_faults.swap(0, Ordering::Acquire);
        let list = self.vgpu_list.lock();
        for dev in list.iter() {
            let mut fault_list = [None; FAULT_UNITS];
            for (u, rec) in self.fault_records.iter().enumerate() {
                if faults & (1 << u) != 0 {
                    fault_list[u] = Some((rec.inst.load(Ordering::Relaxed), rec.va.load(Ordering::Relaxed), rec.info.load(Ordering::Relaxed)));
                }
            }
            vgpu::Vgpu::deliver(dev, nonstall, &fault_list);
        }
    }
}

impl GpuShared {
    fn alloc_slice(&self, share: u32) -> Result<Slice> {
        let units = UnitMap::units_for(share).ok_or(EINVAL)?;
        let first = self.units.lock().alloc(share).ok_or(ENOSPC)?;
        self.vgpus.fetch_add(1, Ordering::Relaxed);
        Ok(self.pools.slice(first, units))
    }

    /// Gives a vGPU's slice back (called when the vGPU's device state is dropped).
    pub(crate) fn release_slice(&self, slice: &Slice) {
        if self.units.lock().free(slice.first_unit, slice.units) {
            self.vgpus.fetch_sub(1, Ordering::Relaxed);
        } else {
            dev_err!(self.pdev.as_ref(), "slice {:?} was not allocated: accounting bug\n", slice.first_unit);
        }
    }
}

/// The mdev side: types by share, vGPU creation and removal.
struct VgpuDriver;

/// What an mdev holds while it exists: its VFIO registration (device files).
struct VgpuHandle {
    reg: vfio::Registration<vgpu::Vgpu>,
}

static MDEV_DRIVER: mdev::DriverSlot<VgpuDriver> = mdev::DriverSlot::new();

impl mdev::Driver for VgpuDriver {
    type ParentData = Arc<GpuShared>;
    type TypeData = u32;
    type Data = VgpuHandle;

    const DEVICE_API: &'static CStr = c"vfio-pci";
    const SLOT: &'static mdev::DriverSlot<Self> = &MDEV_DRIVER;
    const DEV_GROUPS: Option<&'static GroupList<2>> = Some(&VGPU_GROUPS);

    fn probe(mdev: &mdev::Device, gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>) -> Result<Pin<KBox<VgpuHandle>>> {
        let share = *mtype.data();
        let slice = gpu.alloc_slice(share).inspect_err(|_| {
            dev_info!(mdev.as_bound(), "no room for a gpuvm-{} vGPU (ENOSPC)\n", share);
        })?;
        // From here on the slice is owned by the vGPU state and freed when it drops.
        let dev = vfio::Device::new(mdev.as_bound(), vgpu::Vgpu::new(gpu.clone(), share, slice)?)?;
        gpu.add_vgpu(dev.clone())?;
        let reg = match vfio::Registration::new(dev.clone()) {
            Ok(r) => r,
            Err(e) => {
                gpu.remove_vgpu(&dev);
                return Err(e);
            }
        };
        dev_info!(
            mdev.as_bound(),
            "vGPU gpuvm-{}: VRAM {} MiB at {:#x}, channels {}..{}\n",
            share,
            slice.vram_size >> 20,
            slice.vram_base,
            slice.first_channel,
            slice.first_channel + slice.channels - 1
        );
        Ok(KBox::pin(VgpuHandle { reg }, GFP_KERNEL)?)
    }

    fn remove(mdev: &mdev::Device, data: Pin<KBox<VgpuHandle>>) {
        let dev = data.reg.device();
        dev.gpu.remove_vgpu(dev);
        // Dropping the registration waits until userspace closed the device.
        drop(data);
        dev_info!(mdev.as_bound(), "vGPU removed\n");
    }

    fn available(gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>) -> u32 {
        gpu.units.lock().available(*mtype.data())
    }

    fn describe(gpu: &Arc<GpuShared>, mtype: &mdev::Type<u32>, f: &mut Formatter<'_>) -> Result {
        let share = *mtype.data();
        let units = UNITS / share;
        writeln!(
            f,
            "1/{} of a GF100: VRAM {} MiB, channels {}, BAR1 {} MiB, BAR3 {} MiB",
            share,
            (units as u64 * gpu.pools.vram_per_unit) >> 20,
            units * gpu.pools.channels_per_unit,
            (gf100::pci::BAR1_SIZE / share as u64) >> 20,
            (gf100::pci::BAR3_SIZE / share as u64) >> 20
        )
        .map_err(|_| EINVAL)
    }
}

/// One physical GF100 owned by this driver. Field order is drop order: sysfs files first,
/// then the mdev parent (which removes every vGPU), then the GPU is quiesced.
struct GpuvmGpu {
    _attrs: GroupsRegistration,
    _parent: Pin<KBox<mdev::Parent<VgpuDriver>>>,
    _host: HostGpu,
    shared: Arc<GpuShared>,
}

/// The host's hold on the GPU: its interrupt, and quiescing the GPU when dropped (before the
/// interrupt is freed, so no interrupt arrives for a handler that is gone).
struct HostGpu {
    shared: Arc<GpuShared>,
    _msi: irq::MsiRegistration<GpuShared>,
}

impl Drop for HostGpu {
    fn drop(&mut self) {
        // The mapping is revoked once the device is unbound; before that, leave the GPU quiet.
        if let Some(bar0) = self.shared.bar0.try_access() {
            host_init::shut_down(&HostBar0(&bar0));
        }
    }
}

/// Proves the interrupt path at probe: a software interrupt raised through PMC must reach
/// the handler over MSI within a bounded time.
fn verify_msi(pdev: &pci::Device, bar0: &Bar0<'_>, gpu: &GpuShared) -> Result {
    let m = HostBar0(bar0);
    let before = gpu.interrupts.load(Ordering::Relaxed);
    host_init::Mmio::wr(&m, pmc::INTR_EN_HOST, pmc::INTR_EN_HW | pmc::INTR_EN_SW);
    host_init::Mmio::wr(&m, pmc::INTR_HOST, pmc::INTR_SOFTWARE);
    // TIMEOUT: see MSI_VERIFY_MS; a GPU whose interrupts do not arrive is refused.
    let arrived = read_poll_timeout(
        || Ok(gpu.interrupts.load(Ordering::Relaxed)),
        |&n| n != before,
        Delta::from_millis(1),
        Delta::from_millis(MSI_VERIFY_MS),
    );
    host_init::Mmio::wr(&m, pmc::INTR_EN_HOST, pmc::INTR_EN_HW);
    if let Err(e) = arrived {
        dev_err!(pdev, "no MSI within {} ms of a software interrupt ({:?}): refusing\n", MSI_VERIFY_MS, e);
        return Err(EIO);
    }
    Ok(())
}

/// BOOT_0 reads timed at probe.
const BAR0_TIMING_READS: u32 = 256;

/// How long probe waits for the test interrupt (a trapped MMIO round trip in the test VM is
/// ~0.2 ms; real hardware is far faster).
const MSI_VERIFY_MS: i64 = 1000;

/// Pause between two reads of a host register being polled (the first read is immediate).
pub(crate) const HOST_POLL_INTERVAL: Delta = Delta::from_micros(10);
/// How long PFIFO may take to accept a new runlist (nouveau's timeout).
pub(crate) const RUNLIST_TIMEOUT: Delta = Delta::from_secs(2);
/// How long a channel kick may stay pending (nouveau's timeout).
pub(crate) const KICK_TIMEOUT: Delta = Delta::from_secs(2);

struct GpuvmPciDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <GpuvmPciDriver as pci::Driver>::IdInfo,
    [
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_465 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_470 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_C2050 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_4000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_T20 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070_Q as u32), ()),
    ]
);

/// The mdev types, one per share.
const TYPE_NAMES: [(&CStr, &CStr); 4] =
    [(c"1", c"gpuvm-1"), (c"2", c"gpuvm-2"), (c"4", c"gpuvm-4"), (c"8", c"gpuvm-8")];

/// The host bring-up runs over the real BAR0.
/// BAR0 (the register aperture) is 32 MiB on every GF100.
pub(crate) type Bar0<'bound> = pci::Bar<'bound, { gf100::pci::BAR0_SIZE as usize }>;

pub(crate) struct HostBar0<'a, 'b>(pub(crate) &'a Bar0<'b>);

impl host_init::Mmio for HostBar0<'_, '_> {
    fn rd(&self, off: u32) -> u32 {
        self.0.try_read32(off as usize).unwrap_or(gf100::bad::NO_REGISTER)
    }
    fn wr(&self, off: u32, val: u32) {
        // Offsets come from uapi/ and the host layout, all inside BAR0; an out-of-range one
        // would be a bug caught by try_write32's bounds check rather than a stray access.
        let _ = self.0.try_write32(val, off as usize);
    }
}

/// VRAM in bytes from the PFB partition registers (the way nouveau sizes GF100 VRAM).
fn vram_bytes(bar0: &Bar0<'_>) -> u64 {
    let parts = bar0.read32(pfb::FBP_COUNT as usize).min(pfb::MAX_PARTS);
    let disabled = bar0.read32(pfb::FBP_DISABLED_MASK as usize);
    (0..parts)
        .filter(|p| disabled & (1 << p) == 0)
        .map(|p| bar0.try_read32(pfb::part_mib(p) as usize).unwrap_or(0) as u64)
        .sum::<u64>()
        << 20
}

impl pci::Driver for GpuvmPciDriver {
    type IdInfo = ();
    type Data<'bound> = GpuvmGpu;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar0 = pdev.iomap_region_sized::<{ gf100::pci::BAR0_SIZE as usize }>(0, c"gpuvm-bar0")?;
        let boot0 = bar0.read32(pmc::BOOT_0 as usize);
        let chipset = (boot0 >> pmc::BOOT_0_CHIPSET_SHIFT) & pmc::BOOT_0_CHIPSET_MASK;
        if chipset != pmc::CHIPSET_GF100 {
            dev_err!(pdev, "BOOT_0 {:#010x} reports chipset {:#x}, not GF100 ({:#x}): refusing\n", boot0, chipset, pmc::CHIPSET_GF100);
            return Err(ENODEV);
        }
        let vram = vram_bytes(&bar0);
        let Some(pools) = Pools::new(vram, HOST_VRAM_RESERVED, 0, GUEST_CHANNELS) else {
            dev_err!(pdev, "VRAM of {} MiB is too small to partition: refusing\n", vram >> 20);
            return Err(ENODEV);
        };
        dev_info!(pdev, "GF100 chipset {:#x} (BOOT_0 {:#010x}), VRAM {} MiB\n", chipset, boot0, vram >> 20);
        // What one trapped register access costs on this machine: every figure about the
        // mediator's overhead is in units of this.
        let t0 = Instant::<Monotonic>::now();
        let mut same = 0u32;
        for _ in 0..BAR0_TIMING_READS {
            same += u32::from(bar0.read32(pmc::BOOT_0 as usize) == boot0);
        }
        let rtt_ns = t0.elapsed().as_nanos() / i64::from(BAR0_TIMING_READS);
        // Writes of the PRAMIN window base (harmless before bring-up) may be posted.
        let t0 = Instant::<Monotonic>::now();
        for _ in 0..BAR0_TIMING_READS {
            bar0.write32(0, gf100::pbus::PRAMIN_BASE as usize);
        }
        let wr_ns = t0.elapsed().as_nanos() / i64::from(BAR0_TIMING_READS);
        dev_info!(
            pdev,
            "BAR0 read round trip {} ns, write {} ns ({} of {} reads consistent)\n",
            rtt_ns,
            wr_ns,
            same,
            BAR0_TIMING_READS
        );
        let bar3_len = pdev.resource_len(3)?;
        let host = host_init::bring_up(&HostBar0(&bar0), HOST_VRAM_RESERVED, bar3_len).map_err(|e| {
            dev_err!(pdev, "host bring-up failed: {:?}\n", e);
            EIO
        })?;
        dev_info!(pdev, "host bring-up done: BAR3 maps {} MiB of host VRAM, {} PBDMAs, PFIFO on\n", host.bar3_mapped >> 20, host.pbdmas);
        let bar3 = pdev.iomap_region_sized::<{ gf100::pci::BAR3_SIZE as usize }>(3, c"gpuvm-bar3")?.into_devres()?;
        let bar1 = pdev.iomap_region_sized::<{ gf100::pci::BAR1_SIZE as usize }>(1, c"gpuvm-bar1")?.into_devres()?;
        let mut pool = HostPool::new(host_init::layout::FREE, host.bar3_mapped);
        let runlist_bytes = u64::from(RUNLIST_CAPACITY) * pfifo::RUNLIST_ENTRY_SIZE;
        let bufs = [pool.alloc(runlist_bytes).ok_or(ENOMEM)?, pool.alloc(runlist_bytes).ok_or(ENOMEM)?];
        let plain: &pci::Device = pdev;
        let shared = Arc::pin_init(
            try_pin_init!(GpuShared {
                pdev: plain.into(),
                boot0,
                vram_bytes: vram,
                pools,
                units <- new_mutex!(UnitMap::default()),
                vgpus: AtomicU32::new(0),
                bar0: bar0.into_devres()?,
                bar3,
                bar3_mapped: host.bar3_mapped,
                pramin <- new_mutex!(host_mem::PraminWindow::new()),
                pool <- new_mutex!(pool),
                bar1,
                interrupts: AtomicU64::new(0),
                epoch: Instant::<Monotonic>::now(),
                lazy_shadow: AtomicBool::new(true),
                runlist <- new_mutex!(HostRunlist { parts: [None; UNITS as usize], bufs, next: 0 }),
                vgpu_list <- new_mutex!(KVec::new()),
                pending_nonstall: AtomicBool::new(false),
                pending_faults: AtomicU32::new(0),
                fault_records: [const { FaultRecord { inst: AtomicU64::new(0), va: AtomicU64::new(0), info: AtomicU32::new(0) } }; FAULT_UNITS],
            }),
            GFP_KERNEL,
        )?;
        let msi = irq::MsiRegistration::new(pdev, c"gpuvm", shared.clone())?;
        {
            let bar0 = shared.bar0.access(pdev.as_ref())?;
            verify_msi(pdev, bar0, &shared)?;
        }
        dev_info!(pdev, "interrupts over MSI (irq {}) verified\n", msi.irq());
        let host = HostGpu { shared: shared.clone(), _msi: msi };
        let mut types = KVec::with_capacity(SHARES.len(), GFP_KERNEL)?;
        for (share, (sysfs_name, pretty_name)) in SHARES.into_iter().zip(TYPE_NAMES) {
            types.push(mdev::TypeDesc { sysfs_name, pretty_name, data: share }, GFP_KERNEL)?;
        }
        let parent = mdev::Parent::register(pdev.as_ref(), types, shared.clone())?;
        let attrs = GroupsRegistration::new(pdev.as_ref(), &GPU_GROUPS)?;
        Ok(GpuvmGpu { _attrs: attrs, _parent: parent, _host: host, shared })
    }
}

impl Drop for GpuvmGpu {
    fn drop(&mut self) {
        dev_info!(self.shared.pdev.as_ref(), "released (chipset {:#x})\n", pmc::CHIPSET_GF100);
    }
}

// ---- sysfs: <pci device>/gpuvm/ (documented in uapi/sysfs-gpuvm)

/// Declares read-only attributes: `name: Target => |data| value`.
macro_rules! ro_attrs {
    ($target:ty; $($ty:ident $name:literal => |$d:ident| $val:expr;)*) => {$(
        struct $ty;
        impl Attr<$target> for $ty {
            fn show($d: <$target as rust_sysfs::AttrTarget>::Data<'_>, f: &mut Formatter<'_>) -> Result {
                writeln!(f, "{}", $val).map_err(|_| EINVAL)
            }
        }
    )*};
}

type GpuAttrs = BoundDriverData<GpuvmGpu>;

ro_attrs! { GpuAttrs;
    GpuVramTotal "vram_total_mib" => |g| (g.shared.pools.vram_per_unit * UNITS as u64) >> 20;
    GpuVramFree "vram_free_mib" => |g| (g.shared.pools.vram_per_unit * g.shared.units.lock().free_units() as u64) >> 20;
    GpuChannelsTotal "channels_total" => |g| g.shared.pools.channels_per_unit * UNITS;
    GpuChannelsFree "channels_free" => |g| g.shared.pools.channels_per_unit * g.shared.units.lock().free_units();
    GpuVgpus "vgpus" => |g| g.shared.vgpus.load(Ordering::Relaxed);
    GpuVramBytes "vram_physical_mib" => |g| g.shared.vram_bytes >> 20;
    GpuInterrupts "interrupts" => |g| g.shared.interrupts.load(Ordering::Relaxed);
}

static GPU_VRAM_TOTAL: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuVramTotal>(c"vram_total_mib");
static GPU_VRAM_FREE: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuVramFree>(c"vram_free_mib");
static GPU_CHANNELS_TOTAL: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuChannelsTotal>(c"channels_total");
static GPU_CHANNELS_FREE: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuChannelsFree>(c"channels_free");
static GPU_VGPUS: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuVgpus>(c"vgpus");
static GPU_VRAM_PHYSICAL: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuVramBytes>(c"vram_physical_mib");
/// Shadow sync policy: 1 = lazy (sync at the next use), 0 = naive (sync at the guest's flush).
struct GpuLazyShadow;
impl Attr<GpuAttrs> for GpuLazyShadow {
    fn show(g: &GpuvmGpu, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", u32::from(g.shared.lazy_shadow.load(Ordering::Relaxed))).map_err(|_| EINVAL)
    }
    fn store(g: &GpuvmGpu, input: &[u8]) -> Result {
        let on = match rust_sysfs::parse_u32(input)? {
            0 => false,
            1 => true,
            _ => return Err(EINVAL),
        };
        g.shared.lazy_shadow.store(on, Ordering::Relaxed);
        Ok(())
    }
}

static GPU_LAZY_SHADOW: DeviceAttribute = DeviceAttribute::rw::<GpuAttrs, GpuLazyShadow>(c"lazy_shadow");
static GPU_INTERRUPTS: DeviceAttribute = DeviceAttribute::ro::<GpuAttrs, GpuInterrupts>(c"interrupts");
static GPU_ATTR_LIST: AttrList<9> = AttrList::new([
    GPU_LAZY_SHADOW.attr(),
    GPU_INTERRUPTS.attr(),
    GPU_VRAM_TOTAL.attr(),
    GPU_VRAM_FREE.attr(),
    GPU_CHANNELS_TOTAL.attr(),
    GPU_CHANNELS_FREE.attr(),
    GPU_VGPUS.attr(),
    GPU_VRAM_PHYSICAL.attr(),
    core::ptr::null_mut(),
]);
static GPU_GROUP: AttrGroup = AttrGroup::new(Some(c"gpuvm"), &GPU_ATTR_LIST);
static GPU_GROUPS: GroupList<2> = GroupList::new([GPU_GROUP.as_ptr(), core::ptr::null()]);

// ---- sysfs: /sys/bus/mdev/devices/<uuid>/gpuvm/

type VgpuAttrs = mdev::MdevData<VgpuDriver>;

ro_attrs! { VgpuAttrs;
    VgpuType "type" => |h| format_args!("gpuvm-{}", h.reg.device().share);
    VgpuVramMib "vram_mib" => |h| h.reg.device().slice.vram_size >> 20;
    VgpuVramBase "vram_base_mib" => |h| h.reg.device().slice.vram_base >> 20;
    VgpuChannels "channels" => |h| h.reg.device().slice.channels;
    VgpuFirstChannel "first_channel" => |h| h.reg.device().slice.first_channel;
    VgpuBar1 "bar1_mib" => |h| h.reg.device().bar1_size >> 20;
    VgpuBar3 "bar3_mib" => |h| h.reg.device().bar3_size >> 20;
    VgpuMmioTraps "mmio_traps" => |h| h.reg.device().counters.mmio_traps.load(Ordering::Relaxed);
    VgpuMmioDenied "mmio_denied" => |h| h.reg.device().counters.mmio_denied.load(Ordering::Relaxed);
    VgpuResets "resets" => |h| h.reg.device().counters.resets.load(Ordering::Relaxed);
    VgpuForwarded "mmio_forwarded" => |h| h.reg.device().virt_stats().forwarded;
    VgpuDoorbells "submissions" => |h| h.reg.device().virt_stats().doorbells;
    VgpuSyncs "shadow_syncs" => |h| h.reg.device().virt_stats().syncs;
    VgpuPteWrites "pte_writes" => |h| h.reg.device().virt_stats().pte_writes;
    VgpuGuestReads "pte_reads" => |h| h.reg.device().virt_stats().guest_reads;
    VgpuRefused "pte_refused" => |h| h.reg.device().virt_stats().refused;
    VgpuFaults "faults" => |h| h.reg.device().virt_stats().faults;
}

/// Scheduling weight, 1..=100.
struct VgpuWeight;
impl Attr<VgpuAttrs> for VgpuWeight {
    fn show(h: &VgpuHandle, f: &mut Formatter<'_>) -> Result {
        writeln!(f, "{}", h.reg.device().weight.load(Ordering::Relaxed)).map_err(|_| EINVAL)
    }
    fn store(h: &VgpuHandle, input: &[u8]) -> Result {
        let w = rust_sysfs::parse_u32(input)?;
        if !(1..=vgpu::WEIGHT_MAX).contains(&w) {
            return Err(EINVAL);
        }
        h.reg.device().weight.store(w, Ordering::Relaxed);
        Ok(())
    }
}

static VGPU_TYPE: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuType>(c"type");
static VGPU_VRAM_MIB: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuVramMib>(c"vram_mib");
static VGPU_VRAM_BASE: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuVramBase>(c"vram_base_mib");
static VGPU_CHANNELS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuChannels>(c"channels");
static VGPU_FIRST_CHANNEL: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuFirstChannel>(c"first_channel");
static VGPU_BAR1: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuBar1>(c"bar1_mib");
static VGPU_BAR3: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuBar3>(c"bar3_mib");
static VGPU_MMIO_TRAPS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuMmioTraps>(c"mmio_traps");
static VGPU_MMIO_DENIED: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuMmioDenied>(c"mmio_denied");
static VGPU_RESETS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuResets>(c"resets");
static VGPU_WEIGHT: DeviceAttribute = DeviceAttribute::rw::<VgpuAttrs, VgpuWeight>(c"weight");
static VGPU_FORWARDED: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuForwarded>(c"mmio_forwarded");
static VGPU_SUBMISSIONS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuDoorbells>(c"submissions");
static VGPU_SYNCS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuSyncs>(c"shadow_syncs");
static VGPU_PTE_WRITES: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuPteWrites>(c"pte_writes");
static VGPU_PTE_READS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuGuestReads>(c"pte_reads");
static VGPU_PTE_REFUSED: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuRefused>(c"pte_refused");
static VGPU_FAULTS: DeviceAttribute = DeviceAttribute::ro::<VgpuAttrs, VgpuFaults>(c"faults");
static VGPU_ATTR_LIST: AttrList<19> = AttrList::new([
    VGPU_FORWARDED.attr(),
    VGPU_SUBMISSIONS.attr(),
    VGPU_SYNCS.attr(),
    VGPU_PTE_WRITES.attr(),
    VGPU_PTE_READS.attr(),
    VGPU_PTE_REFUSED.attr(),
    VGPU_FAULTS.attr(),
    VGPU_TYPE.attr(),
    VGPU_VRAM_MIB.attr(),
    VGPU_VRAM_BASE.attr(),
    VGPU_CHANNELS.attr(),
    VGPU_FIRST_CHANNEL.attr(),
    VGPU_BAR1.attr(),
    VGPU_BAR3.attr(),
    VGPU_MMIO_TRAPS.attr(),
    VGPU_MMIO_DENIED.attr(),
    VGPU_RESETS.attr(),
    VGPU_WEIGHT.attr(),
    core::ptr::null_mut(),
]);
static VGPU_GROUP: AttrGroup = AttrGroup::new(Some(c"gpuvm"), &VGPU_ATTR_LIST);
static VGPU_GROUPS: GroupList<2> = GroupList::new([VGPU_GROUP.as_ptr(), core::ptr::null()]);

// ---- module

/// Field order is drop order: the PCI driver (and with it every parent and vGPU) goes before
/// the mdev driver those parents point at.
struct GpuvmModule {
    _pci: Pin<KBox<kernel::driver::Registration<pci::Adapter<GpuvmPciDriver>>>>,
    _mdev: Pin<KBox<mdev::DriverRegistration<VgpuDriver>>>,
}

impl kernel::Module for GpuvmModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let mdev = KBox::pin_init(mdev::DriverRegistration::new(c"gpuvm", module), GFP_KERNEL)?;
        let pci = KBox::pin_init(kernel::driver::Registration::new(c"gpuvm", module), GFP_KERNEL)?;
        Ok(GpuvmModule { _pci: pci, _mdev: mdev })
    }
}
