//! The in-process GF100 model as a transport (host tests and `gpuvm-bench --model`).
//!
//! DMA buffers are memfds this process maps and also hands to the model (`dma_map`) at bus
//! addresses it chooses, like an IOMMU would: both sides see the same bytes.

use super::{page_round, Bar, DmaBuf, IrqMode, Transport, PAGE};
use gf100_model::mem::HostMemory;
use gf100_model::{Gpu, ModelConfig};
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Bus addresses handed out for DMA buffers.
const IOVA_BASE: u64 = 1 << 32;

pub struct ModelTransport {
    gpu: Arc<Gpu>,
    next_iova: u64,
    irq: bool,
}

fn model_bar(b: Bar) -> gf100_model::Bar {
    match b {
        Bar::Bar0 => gf100_model::Bar::Bar0,
        Bar::Bar1 => gf100_model::Bar::Bar1,
        Bar::Bar3 => gf100_model::Bar::Bar3,
    }
}

impl ModelTransport {
    /// A fresh model GPU with `vram_mib` MiB of VRAM.
    pub fn new(vram_mib: u64) -> io::Result<Self> {
        let cfg = ModelConfig { vram_bytes: vram_mib << 20, ..ModelConfig::default() };
        Ok(Self::with_gpu(Gpu::new(cfg)?))
    }

    /// Share an existing model GPU (several opens of one device, as the init/close loop does).
    pub fn with_gpu(gpu: Arc<Gpu>) -> Self {
        ModelTransport { gpu, next_iova: IOVA_BASE, irq: false }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
}

impl Transport for ModelTransport {
    fn describe(&self) -> String {
        format!("in-process model ({} MiB VRAM)", self.gpu.config().vram_bytes >> 20)
    }

    fn bar_size(&self, bar: Bar) -> u64 {
        model_bar(bar).size()
    }

    fn rd32(&mut self, bar: Bar, off: u64) -> u32 {
        self.gpu.bar_read32(model_bar(bar), off)
    }

    fn wr32(&mut self, bar: Bar, off: u64, val: u32) {
        self.gpu.bar_write32(model_bar(bar), off, val)
    }

    fn write_block(&mut self, bar: Bar, off: u64, data: &[u8]) {
        self.gpu.bar_write(model_bar(bar), off, data)
    }

    fn read_block(&mut self, bar: Bar, off: u64, data: &mut [u8]) {
        self.gpu.bar_read(model_bar(bar), off, data)
    }

    fn dma_alloc(&mut self, len: usize) -> io::Result<DmaBuf> {
        let len = page_round(len);
        let name = c"gpuvm-dma";
        // SAFETY: plain syscall; the fd is checked, then owned by `File`.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        let mem = Arc::new(HostMemory::from_file(&file, 0, len as u64)?);
        // SAFETY: a shared mapping of our own memfd; the model maps the same file.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let iova = self.next_iova;
        if let Err(e) = self.gpu.dma_map(iova, mem) {
            // SAFETY: the mapping made above.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::other(e));
        }
        self.next_iova += len as u64;
        let pages = (0..len / PAGE).map(|i| iova + (i * PAGE) as u64).collect();
        Ok(DmaBuf { ptr: p as *mut u8, len, pages, handle: iova })
    }

    fn dma_free(&mut self, buf: DmaBuf) {
        self.gpu.dma_unmap(buf.handle);
        // SAFETY: the mapping made in dma_alloc.
        unsafe { libc::munmap(buf.ptr as *mut _, buf.len) };
    }

    fn irq_enable(&mut self) -> IrqMode {
        self.irq = true;
        IrqMode::Line
    }

    fn irq_wait(&mut self, timeout: Duration) -> bool {
        self.irq && self.gpu.irq_wait(timeout)
    }

    fn irq_disable(&mut self) {
        self.irq = false;
    }
}
