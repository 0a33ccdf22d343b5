//! Transports: how the driver reaches a GF100. The driver sees only [`Transport`]; whether the
//! device is the in-process model, a vfio-pci device without an IOMMU or a VFIO device behind an
//! IOMMU (mdev or vfio-pci; cdev + iommufd or group + container) is invisible to it.

use std::io;
use std::time::Duration;

pub mod mediated;
pub mod model;
pub mod vfio;

/// The three BARs the driver uses. GF100's RAMIN aperture is PCI BAR 3 (nouveau's "BAR2").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Bar0 = 0,
    Bar1 = 1,
    Bar3 = 2,
}

impl Bar {
    pub const ALL: [Bar; 3] = [Bar::Bar0, Bar::Bar1, Bar::Bar3];
    pub fn name(self) -> &'static str {
        match self {
            Bar::Bar0 => "bar0",
            Bar::Bar1 => "bar1",
            Bar::Bar3 => "bar3",
        }
    }
    /// The PCI BAR number (= the VFIO region index).
    pub fn pci_index(self) -> u32 {
        match self {
            Bar::Bar0 => 0,
            Bar::Bar1 => 1,
            Bar::Bar3 => 3,
        }
    }
}

/// Size of a host page and of a GPU small page.
pub const PAGE: usize = 4096;

/// Host memory the device can reach by DMA: a CPU mapping plus the device (bus) address of each
/// 4 KiB page. Without an IOMMU the pages are scattered physical frames; with one they are a
/// contiguous IOVA range. The driver maps `pages` into a GPU VM with system-memory PTEs.
pub struct DmaBuf {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) pages: Vec<u64>,
    /// Transport-private handle (e.g. the IOVA of the mapping, or a model slot).
    pub(crate) handle: u64,
}

// The buffer is plain memory owned by the transport until dma_free.
unsafe impl Send for DmaBuf {}

impl DmaBuf {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn pages(&self) -> &[u64] {
        &self.pages
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by this buffer.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; &mut self gives exclusive CPU access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    /// Volatile 32-bit read (the device writes fences here behind the compiler's back).
    pub fn read32_volatile(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len && off % 4 == 0);
        // SAFETY: in bounds and aligned.
        unsafe { std::ptr::read_volatile(self.ptr.add(off) as *const u32) }
    }
    pub fn write32_volatile(&mut self, off: usize, v: u32) {
        assert!(off + 4 <= self.len && off % 4 == 0);
        // SAFETY: in bounds and aligned.
        unsafe { std::ptr::write_volatile(self.ptr.add(off) as *mut u32, v) }
    }
}

/// How interrupts reach the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// No interrupt delivery: waits poll.
    None,
    Msi,
    /// Level-triggered line: the transport re-enables it after the device-side ack.
    Intx,
    /// In-process model: the model's interrupt line is sampled directly.
    Line,
}

pub trait Transport: Send {
    /// One line: which device and which path (for the JSON record).
    fn describe(&self) -> String;
    fn bar_size(&self, bar: Bar) -> u64;
    fn rd32(&mut self, bar: Bar, off: u64) -> u32;
    fn wr32(&mut self, bar: Bar, off: u64, val: u32);
    /// Bulk write through a BAR (length a multiple of 4). The default loops over 32-bit writes.
    fn write_block(&mut self, bar: Bar, off: u64, data: &[u8]) {
        for (i, w) in data.chunks_exact(4).enumerate() {
            self.wr32(bar, off + 4 * i as u64, u32::from_le_bytes(w.try_into().unwrap()));
        }
    }
    /// Bulk read through a BAR (length a multiple of 4).
    fn read_block(&mut self, bar: Bar, off: u64, data: &mut [u8]) {
        for (i, w) in data.chunks_exact_mut(4).enumerate() {
            w.copy_from_slice(&self.rd32(bar, off + 4 * i as u64).to_le_bytes());
        }
    }
    /// Allocate `len` bytes (rounded up to pages) of DMA-able, zeroed host memory.
    fn dma_alloc(&mut self, len: usize) -> io::Result<DmaBuf>;
    fn dma_free(&mut self, buf: DmaBuf);
    /// Set up interrupt delivery; returns the mode obtained.
    fn irq_enable(&mut self) -> IrqMode;
    /// Wait up to `timeout` for an interrupt; true if one arrived.
    fn irq_wait(&mut self, timeout: Duration) -> bool;
    /// After the driver acked the cause at the device: re-enable a level-triggered line.
    fn irq_rearm(&mut self) {}
    fn irq_disable(&mut self) {}
    /// Give the device a chance to make progress (the in-process model runs here; real
    /// hardware and VFIO devices run on their own).
    fn pump(&mut self) {}
    /// Device reset (VFIO_DEVICE_RESET): the device is back at power-on state and whatever
    /// the driver set up is gone. Transports without one say so.
    fn reset(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Round up to a whole number of pages.
pub fn page_round(len: usize) -> usize {
    len.div_ceil(PAGE).max(1) * PAGE
}
