// SPDX-License-Identifier: GPL-2.0
//! A vGPU: the VFIO device one mdev presents to its VM.
//!
//! It looks like a Quadro 6000: an emulated config space (shadow/pci_config.rs) with the
//! type's BAR sizes, the VFIO regions of a PCI device, INTx/MSI/REQ interrupts delivered
//! through eventfds, and reset. BAR accesses are trapped here; what each register does is
//! decided by the classification table of the full-virtualization layer.

use crate::{
    bindings as sys,
    eventfd::EventFd,
    gf100,
    partition::Slice,
    pci_config::{ConfigSpace, CONFIG_SIZE},
    vfio, GpuShared,
};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{new_mutex, prelude::*, sync::Arc, sync::Mutex};

/// What the VM's interrupt wiring looks like right now.
#[derive(Default)]
struct Irqs {
    intx: Option<EventFd>,
    intx_masked: bool,
    msi: Option<EventFd>,
    req: Option<EventFd>,
}

struct VgpuState {
    config: ConfigSpace,
    irqs: Irqs,
}

/// Counters shown in sysfs.
#[derive(Default)]
pub(crate) struct VgpuCounters {
    pub(crate) mmio_traps: AtomicU64,
    pub(crate) mmio_denied: AtomicU64,
    pub(crate) resets: AtomicU64,
}

/// Default and bounds of the scheduling weight.
pub(crate) const WEIGHT_DEFAULT: u32 = 10;
pub(crate) const WEIGHT_MAX: u32 = 100;

/// One vGPU's device state.
#[pin_data(PinnedDrop)]
pub(crate) struct Vgpu {
    pub(crate) gpu: Arc<GpuShared>,
    pub(crate) share: u32,
    pub(crate) slice: Slice,
    pub(crate) bar1_size: u64,
    pub(crate) bar3_size: u64,
    pub(crate) counters: VgpuCounters,
    pub(crate) weight: AtomicU32,
    #[pin]
    state: Mutex<VgpuState>,
}

impl Vgpu {
    /// A vGPU of type `gpuvm-share` owning `slice` of `gpu`. The slice goes back to the GPU
    /// when the vGPU is dropped.
    pub(crate) fn new(gpu: Arc<GpuShared>, share: u32, slice: Slice) -> impl PinInit<Self, Error> {
        let bar1_size = gf100::pci::BAR1_SIZE / share as u64;
        let bar3_size = gf100::pci::BAR3_SIZE / share as u64;
        let config = ConfigSpace::new(bar1_size, bar3_size);
        try_pin_init!(Self {
            gpu,
            share,
            slice,
            bar1_size,
            bar3_size,
            counters: VgpuCounters::default(),
            weight: AtomicU32::new(WEIGHT_DEFAULT),
            state <- new_mutex!(VgpuState { config, irqs: Irqs::default() }),
        })
    }

    fn region_size(&self, index: u32) -> u64 {
        match index {
            sys::VFIO_PCI_BAR0_REGION_INDEX => gf100::pci::BAR0_SIZE,
            sys::VFIO_PCI_BAR1_REGION_INDEX => self.bar1_size,
            sys::VFIO_PCI_BAR3_REGION_INDEX => self.bar3_size,
            sys::VFIO_PCI_CONFIG_REGION_INDEX => CONFIG_SIZE as u64,
            _ => 0,
        }
    }

    /// Checks that an access of `len` bytes at `off` lies inside region `index`.
    fn check_access(&self, index: u32, off: u64, len: usize) -> Result {
        let size = self.region_size(index);
        match off.checked_add(len as u64) {
            Some(end) if size != 0 && end <= size => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// A BAR0 read. Registers are 32 bits wide: other widths are refused.
    fn bar0_read(&self, off: u64) -> u32 {
        self.counters.mmio_traps.fetch_add(1, Ordering::Relaxed);
        if off == gf100::pmc::BOOT_0 as u64 {
            return self.gpu.boot0;
        }
        // Until the register table of the full-virtualization layer lands, every other
        // register is denied: reads 0, never forwarded.
        self.counters.mmio_denied.fetch_add(1, Ordering::Relaxed);
        0
    }

    fn bar0_write(&self, _off: u64, _val: u32) {
        self.counters.mmio_traps.fetch_add(1, Ordering::Relaxed);
        self.counters.mmio_denied.fetch_add(1, Ordering::Relaxed);
    }

    fn reset_state(&self, st: &mut VgpuState) {
        st.config = ConfigSpace::new(self.bar1_size, self.bar3_size);
        st.irqs.intx_masked = false;
    }
}

#[pinned_drop]
impl PinnedDrop for Vgpu {
    fn drop(self: Pin<&mut Self>) {
        self.gpu.release_slice(&self.slice);
    }
}

/// Installs or removes the eventfd of a one-vector IRQ index.
fn set_eventfd(slot: &mut Option<EventFd>, fd: i32) -> Result {
    *slot = match fd {
        -1 => None,
        fd => Some(EventFd::from_fd(fd)?),
    };
    Ok(())
}

impl vfio::Ops for Vgpu {
    const NAME: &'static CStr = c"gpuvm-vgpu";

    fn close_device(dev: &vfio::Device<Self>) {
        // The VM is gone: drop its interrupt wiring so nothing signals a dead eventfd.
        let mut st = dev.state.lock();
        st.irqs = Irqs::default();
    }

    fn device_info(_dev: &vfio::Device<Self>) -> vfio::DeviceInfo {
        vfio::DeviceInfo {
            flags: sys::VFIO_DEVICE_FLAGS_PCI | sys::VFIO_DEVICE_FLAGS_RESET,
            num_regions: sys::VFIO_PCI_NUM_REGIONS,
            num_irqs: sys::VFIO_PCI_NUM_IRQS,
        }
    }

    fn region_info(dev: &vfio::Device<Self>, index: u32) -> Result<vfio::RegionInfo> {
        let size = dev.region_size(index);
        let flags = if size == 0 { 0 } else { sys::VFIO_REGION_INFO_FLAG_READ | sys::VFIO_REGION_INFO_FLAG_WRITE };
        Ok(vfio::RegionInfo { size, flags })
    }

    fn irq_info(_dev: &vfio::Device<Self>, index: u32) -> Result<vfio::IrqInfo> {
        let (flags, count) = match index {
            sys::VFIO_PCI_INTX_IRQ_INDEX => {
                (sys::VFIO_IRQ_INFO_EVENTFD | sys::VFIO_IRQ_INFO_MASKABLE | sys::VFIO_IRQ_INFO_AUTOMASKED, 1)
            }
            sys::VFIO_PCI_MSI_IRQ_INDEX | sys::VFIO_PCI_REQ_IRQ_INDEX => {
                (sys::VFIO_IRQ_INFO_EVENTFD | sys::VFIO_IRQ_INFO_NORESIZE, 1)
            }
            _ => (0, 0),
        };
        Ok(vfio::IrqInfo { flags, count })
    }

    fn set_irqs(dev: &vfio::Device<Self>, set: &vfio::IrqSet<'_>) -> Result {
        use vfio::{IrqAction::*, IrqData};
        let mut guard = dev.state.lock();
        let st = &mut *guard;
        let slot = match set.index {
            sys::VFIO_PCI_INTX_IRQ_INDEX => &mut st.irqs.intx,
            sys::VFIO_PCI_MSI_IRQ_INDEX => &mut st.irqs.msi,
            sys::VFIO_PCI_REQ_IRQ_INDEX => &mut st.irqs.req,
            _ => return Err(EINVAL),
        };
        // Count 0 with no data: tear the index down (vfio-pci semantics).
        if set.count == 0 {
            return match (set.action, &set.data) {
                (Trigger, IrqData::None) => {
                    *slot = None;
                    Ok(())
                }
                _ => Err(EINVAL),
            };
        }
        let fire = match (set.action, &set.data) {
            (Trigger, IrqData::Eventfd(fds)) => {
                set_eventfd(slot, fds[0])?;
                false
            }
            (Trigger, IrqData::None) => true,
            (Trigger, IrqData::Bool(b)) => b[0] != 0,
            (Mask | Unmask, IrqData::Eventfd(_)) => return Err(EINVAL),
            (Mask | Unmask, _) if set.index != sys::VFIO_PCI_INTX_IRQ_INDEX => return Err(EINVAL),
            (action, data) => {
                let apply = match data {
                    IrqData::Bool(b) => b[0] != 0,
                    _ => true,
                };
                if apply {
                    st.irqs.intx_masked = action == Mask;
                    if action == Unmask {
                        st.config.set_interrupt_status(false);
                    }
                }
                false
            }
        };
        if fire {
            match set.index {
                sys::VFIO_PCI_REQ_IRQ_INDEX => {
                    if let Some(e) = &st.irqs.req {
                        e.signal();
                    }
                }
                sys::VFIO_PCI_MSI_IRQ_INDEX => {
                    if let Some(e) = &st.irqs.msi {
                        e.signal();
                    }
                }
                _ => {
                    if let Some(e) = &st.irqs.intx {
                        st.irqs.intx_masked = true;
                        e.signal();
                    }
                }
            }
        }
        Ok(())
    }

    fn reset(dev: &vfio::Device<Self>) -> Result {
        let mut st = dev.state.lock();
        dev.reset_state(&mut st);
        dev.counters.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read(dev: &vfio::Device<Self>, region: u32, off: u64, buf: &mut [u8]) -> Result {
        dev.check_access(region, off, buf.len())?;
        match region {
            sys::VFIO_PCI_CONFIG_REGION_INDEX => {
                dev.state.lock().config.read(off, buf).then_some(()).ok_or(EINVAL)
            }
            sys::VFIO_PCI_BAR0_REGION_INDEX => {
                if buf.len() != 4 {
                    return Err(EINVAL);
                }
                buf.copy_from_slice(&dev.bar0_read(off).to_le_bytes());
                Ok(())
            }
            _ => {
                // BAR1/BAR3 windows: emulated by the full-virtualization layer; until then
                // they read as unmapped.
                dev.counters.mmio_traps.fetch_add(1, Ordering::Relaxed);
                dev.counters.mmio_denied.fetch_add(1, Ordering::Relaxed);
                buf.fill(0);
                Ok(())
            }
        }
    }

    fn write(dev: &vfio::Device<Self>, region: u32, off: u64, data: &[u8]) -> Result {
        dev.check_access(region, off, data.len())?;
        match region {
            sys::VFIO_PCI_CONFIG_REGION_INDEX => {
                dev.state.lock().config.write(off, data).then_some(()).ok_or(EINVAL)
            }
            sys::VFIO_PCI_BAR0_REGION_INDEX => {
                let word: [u8; 4] = data.try_into().map_err(|_| EINVAL)?;
                dev.bar0_write(off, u32::from_le_bytes(word));
                Ok(())
            }
            _ => {
                dev.counters.mmio_traps.fetch_add(1, Ordering::Relaxed);
                dev.counters.mmio_denied.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    fn request(dev: &vfio::Device<Self>, count: u32) {
        let st = dev.state.lock();
        match &st.irqs.req {
            Some(e) => {
                if count == 0 {
                    dev_info!(dev.parent(), "removal requested: asking the user to release the vGPU\n");
                }
                e.signal();
            }
            None => {
                if count == 0 {
                    dev_info!(dev.parent(), "removal blocked: device open and no REQ eventfd\n");
                }
            }
        }
    }
}
