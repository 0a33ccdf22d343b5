// SPDX-License-Identifier: GPL-2.0
//! How shadow/ reaches memory and time: three small traits the kernel implements over BAR3 /
//! PRAMIN, VFIO pinning and ktime, and the host tests over byte arrays and a fake clock; plus
//! the *guest view* of VRAM, through which every read of a guest structure goes, so that no
//! guest-chosen address can reach outside the vGPU's partition.

use crate::partition::Slice;

/// Host VRAM, by host physical address (4-byte aligned accesses).
pub trait Vram {
    /// Reads the 32-bit word at host VRAM address `pa`.
    fn read32(&self, pa: u64) -> u32;
    /// Writes the 32-bit word at host VRAM address `pa`.
    fn write32(&mut self, pa: u64, v: u32);

    /// Reads a little-endian 64-bit entry (page-table entries are two words).
    fn read64(&self, pa: u64) -> u64 {
        u64::from(self.read32(pa)) | u64::from(self.read32(pa.wrapping_add(4))) << 32
    }
    /// Writes a little-endian 64-bit entry, low word first.
    fn write64(&mut self, pa: u64, v: u64) {
        self.write32(pa, v as u32);
        self.write32(pa.wrapping_add(4), (v >> 32) as u32);
    }
}

/// Guest system memory as the GPU reaches it: guest bus addresses (IOVAs) are pinned and
/// translated to host bus addresses. The kernel implements this with `vfio_pin_pages` and a
/// pin cache that lives until the IOVA range is unmapped (then it asks the shadow page tables
/// for a full re-walk), so `pin` is idempotent and has no matching unpin here.
pub trait SysMem {
    /// Host bus address of the guest range `[iova, iova + len)`, which must be pinned and
    /// contiguous on the host; `None` if the range is not mapped for this vGPU.
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64>;
}

/// A monotonic clock in nanoseconds (PTIMER emulation).
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed point.
    fn now_ns(&self) -> u64;
}

/// The guest's view of its VRAM: guest "physical" address x is host `vram_base + x`, and only
/// inside the partition. Unaligned or out-of-partition reads yield `None`, never a host word.
pub struct GuestVram<'a, V: Vram + ?Sized> {
    vram: &'a V,
    slice: Slice,
}

impl<'a, V: Vram + ?Sized> GuestVram<'a, V> {
    /// The view of `slice` inside `vram`.
    pub fn new(vram: &'a V, slice: Slice) -> Self {
        GuestVram { vram, slice }
    }

    /// The 32-bit word at guest VRAM address `pa`.
    pub fn read32(&self, pa: u64) -> Option<u32> {
        if !pa.is_multiple_of(4) {
            return None;
        }
        self.slice.vram_to_host(pa, 4).map(|h| self.vram.read32(h))
    }

    /// The 64-bit entry at guest VRAM address `pa` (8-byte aligned, as the MMU reads them).
    pub fn read64(&self, pa: u64) -> Option<u64> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        self.slice.vram_to_host(pa, 8).map(|h| self.vram.read64(h))
    }

    /// A page-table entry at `pa` whose bit `valid` (in the low word) says whether the rest
    /// matters: for an entry without it only the low word is read and the high word is
    /// returned as 0. Every read of guest memory is a trapped access on a virtualized GPU,
    /// and most entries of a sparse table are invalid.
    pub fn read_entry(&self, pa: u64, valid: u32) -> Option<u64> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        let h = self.slice.vram_to_host(pa, 8)?;
        let lo = self.vram.read32(h);
        if lo & valid == 0 {
            return Some(u64::from(lo));
        }
        Some(u64::from(lo) | u64::from(self.vram.read32(h + 4)) << 32)
    }
}
