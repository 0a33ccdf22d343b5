//! The vfio-user server: presents one [`Gpu`] to one client (QEMU's `vfio-user-pci`).
//!
//! Regions: PCI config (4 KiB), BAR0 (32 MiB), BAR1 (128 MiB), BAR3 (64 MiB), all trapped:
//! BAR1/BAR3 are windows through the GPU's BAR page tables, so they are served through the
//! model's MMU rather than mmapped (see the crate docs). Interrupts: MSI (one vector) and
//! INTx (level, auto-masked on delivery, re-armed by the client's UNMASK). DMA: the client's
//! DMA_MAP fds (shared guest RAM) are mapped and registered with [`Gpu::dma_map`].
//!
//! Guest input never panics the server: malformed accesses are answered (reads of
//! unsupported sizes or regions return all-ones) and counted.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use log::{info, warn};
use vfio_bindings::bindings::vfio::*;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

use crate::gpu::{Bar, Gpu};
use crate::mem::HostMemory;

/// Where the interrupt output goes; shared with the GPU's notifier.
#[derive(Default)]
struct IrqRoute {
    msi: Option<File>,
    intx: Option<File>,
    msi_enabled: bool,
    intx_disabled: bool,
    intx_masked: bool,
    level: bool,
}

impl IrqRoute {
    fn signal(f: &mut Option<File>) {
        if let Some(f) = f {
            if let Err(e) = f.write(&1u64.to_ne_bytes()) {
                warn!("interrupt eventfd write failed: {e}");
            }
        }
    }

    /// Called on every level change (and on MSI re-arm with `true`).
    fn on_level(&mut self, level: bool) {
        self.level = level;
        if self.msi_enabled {
            if level {
                Self::signal(&mut self.msi);
            }
        } else {
            self.deliver_intx();
        }
    }

    /// INTx is level triggered: while asserted and not masked, signal once and auto-mask.
    fn deliver_intx(&mut self) {
        if self.level && !self.intx_masked && !self.intx_disabled && self.intx.is_some() {
            Self::signal(&mut self.intx);
            self.intx_masked = true;
        }
    }
}

struct Backend {
    gpu: Arc<Gpu>,
    irq: Arc<Mutex<IrqRoute>>,
}

fn bar_of(region: u32) -> Option<Bar> {
    match region {
        VFIO_PCI_BAR0_REGION_INDEX => Some(Bar::Bar0),
        VFIO_PCI_BAR1_REGION_INDEX => Some(Bar::Bar1),
        VFIO_PCI_BAR3_REGION_INDEX => Some(Bar::Bar3),
        _ => None,
    }
}

impl Backend {
    fn lock_irq(&self) -> std::sync::MutexGuard<'_, IrqRoute> {
        self.irq.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerBackend for Backend {
    fn region_read(
        &mut self,
        region: u32,
        offset: u64,
        data: &mut [u8],
    ) -> Result<(), std::io::Error> {
        match (region, bar_of(region)) {
            (VFIO_PCI_CONFIG_REGION_INDEX, _) => self.gpu.config_read(offset, data),
            (_, Some(bar)) => self.gpu.bar_read(bar, offset, data),
            _ => data.fill(0xff),
        }
        Ok(())
    }

    fn region_write(
        &mut self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), std::io::Error> {
        match (region, bar_of(region)) {
            (VFIO_PCI_CONFIG_REGION_INDEX, _) => {
                self.gpu.config_write(offset, data);
                let (msi, intx_off) = (self.gpu.msi_enabled(), self.gpu.intx_disabled());
                let mut irq = self.lock_irq();
                irq.msi_enabled = msi;
                irq.intx_disabled = intx_off;
                if !msi {
                    irq.deliver_intx();
                }
            }
            (_, Some(bar)) => self.gpu.bar_write(bar, offset, data),
            _ => warn!("write to region {region} ignored"),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> Result<(), std::io::Error> {
        let Some(fd) = fd else {
            // ROM and other devices' MMIO come without an fd; the model cannot reach them
            // (the crate has no DMA_READ/WRITE), so DMA there faults. Guest RAM must be a
            // shared memfd to be reachable.
            info!("DMA_MAP {address:#x}+{size:#x} without an fd: not reachable by the GPU");
            return Ok(());
        };
        // A new map of an already-mapped range replaces it (the client remapped its RAM).
        let replaced = self.gpu.dma_unmap_range(address, size);
        if replaced > 0 {
            warn!("DMA_MAP {address:#x}+{size:#x} replaced {replaced} overlapping map(s)");
        }
        let mem = HostMemory::from_file(&fd, offset, size)?;
        self.gpu
            .dma_map(address, Arc::new(mem))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }

    fn dma_unmap(
        &mut self,
        flags: DmaUnmapFlags,
        address: u64,
        size: u64,
    ) -> Result<(), std::io::Error> {
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.gpu.dma_unmap_all();
        } else {
            self.gpu.dma_unmap_range(address, size);
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), std::io::Error> {
        info!("device reset");
        self.gpu.reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        _start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), std::io::Error> {
        let mut irq = self.lock_irq();
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        match (index, action) {
            (VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                let fd = if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 && count > 0 {
                    fds.into_iter().next()
                } else {
                    None
                };
                if index == VFIO_PCI_MSI_IRQ_INDEX {
                    irq.msi = fd;
                } else {
                    irq.intx = fd;
                    irq.intx_masked = false;
                    irq.deliver_intx();
                }
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                irq.intx_masked = false;
                irq.deliver_intx();
            }
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) => irq.intx_masked = true,
            _ => warn!("SET_IRQS index {index} flags {flags:#x} not supported; ignored"),
        }
        Ok(())
    }
}

fn region(index: u32, size: u64) -> ServerRegion {
    let flags = if size > 0 {
        VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
    } else {
        0
    };
    ServerRegion {
        region_info: vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags,
            index,
            cap_offset: 0,
            size,
            offset: 0,
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

fn regions() -> Vec<ServerRegion> {
    (0..VFIO_PCI_NUM_REGIONS)
        .map(|i| match i {
            VFIO_PCI_CONFIG_REGION_INDEX => region(i, gpuvm_uapi::gf100::pci::CFG_SIZE_PCIE as u64),
            _ => region(i, bar_of(i).map_or(0, Bar::size)),
        })
        .collect()
}

fn irqs() -> Vec<IrqInfo> {
    let none = |index| IrqInfo {
        index,
        flags: 0,
        count: 0,
    };
    vec![
        IrqInfo {
            index: VFIO_PCI_INTX_IRQ_INDEX,
            flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
            count: 1,
        },
        IrqInfo {
            index: VFIO_PCI_MSI_IRQ_INDEX,
            flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
            count: 1,
        },
        none(VFIO_PCI_MSIX_IRQ_INDEX),
        none(VFIO_PCI_ERR_IRQ_INDEX),
        none(VFIO_PCI_REQ_IRQ_INDEX),
    ]
}

/// The line `gf100-model` prints on stderr, followed by the socket path, once its socket
/// accepts connections. Harnesses wait for it rather than for the socket file: bind()
/// creates the file before listen() runs, and a connect() in between is refused.
pub const READY_LINE_PREFIX: &str = "gf100-model: listening on ";

/// A bound socket waiting for its client.
pub struct GpuServer {
    server: Server,
    gpu: Arc<Gpu>,
}

impl GpuServer {
    /// Binds the vfio-user socket at `path` (which must not exist) for `gpu`. On return the
    /// socket listens: a client may connect before [`GpuServer::serve`] runs.
    pub fn bind(path: &Path, gpu: Arc<Gpu>) -> Result<GpuServer, String> {
        let server = Server::new(path, true, irqs(), regions()).map_err(|e| format!("{e:?}"))?;
        Ok(GpuServer { server, gpu })
    }

    /// Serves one client until it disconnects.
    pub fn serve(self) -> Result<(), String> {
        let irq = Arc::new(Mutex::new(IrqRoute::default()));
        let route = irq.clone();
        self.gpu.set_irq_notifier(Some(Arc::new(move |level| {
            route
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .on_level(level);
        })));
        // Without a config-space write the client starts with bus mastering off.
        self.gpu
            .config_write(gpuvm_uapi::gf100::pci::CFG_COMMAND as u64, &[0, 0]);
        let mut backend = Backend {
            gpu: self.gpu.clone(),
            irq,
        };
        let res = self.server.run(&mut backend).map_err(|e| format!("{e:?}"));
        self.gpu.set_irq_notifier(None);
        res
    }
}
