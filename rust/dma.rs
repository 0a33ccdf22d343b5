// SPDX-License-Identifier: GPL-2.0
//! Host system memory the GPU reaches by DMA (`dma_alloc_coherent` through the kernel crate's
//! `dma::Coherent`), as 32-bit words the CPU reads and writes while the GPU may read or write
//! the same memory. The driver above sees only word offsets and the bus address to give the
//! GPU; the pointer arithmetic and its bounds live here.

#![allow(unreachable_pub, dead_code)]

use kernel::{
    device::{Bound, Device},
    dma::Coherent,
    prelude::*,
};

/// A coherent allocation of `len` 32-bit words, zeroed when allocated.
pub struct DmaWords {
    mem: Coherent<[u32]>,
}

impl DmaWords {
    /// Allocates `bytes` (rounded up to whole words) of zeroed coherent memory for `dev`.
    pub fn zeroed(dev: &Device<Bound>, bytes: usize) -> Result<DmaWords> {
        let words = bytes.div_ceil(4).max(1);
        Ok(DmaWords { mem: Coherent::zeroed_slice(dev, words, GFP_KERNEL)? })
    }

    /// The bus address the GPU reaches the first word at.
    pub fn bus(&self) -> u64 {
        self.mem.dma_address()
    }

    /// Bytes allocated.
    pub fn bytes(&self) -> u64 {
        self.mem.len() as u64 * 4
    }

    fn word(&self, off: u64) -> Option<*mut u32> {
        if off % 4 != 0 {
            return None;
        }
        let i = usize::try_from(off / 4).ok().filter(|&i| i < self.mem.len())?;
        // SAFETY: `i` is below the allocation's length in words, so the element pointer stays
        // inside the allocation (no access is made here).
        Some(unsafe { self.mem.as_mut_ptr().cast::<u32>().add(i) })
    }

    /// The word at byte offset `off`; all-ones outside the allocation or unaligned.
    pub fn read32(&self, off: u64) -> u32 {
        match self.word(off) {
            // SAFETY: `p` is an aligned word inside the live allocation. The GPU may write it
            // concurrently: a volatile read of an aligned word neither tears nor is elided,
            // and no reference to the memory is formed.
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }

    /// Writes the word at byte offset `off`; ignored outside the allocation or unaligned.
    pub fn write32(&self, off: u64, v: u32) {
        if let Some(p) = self.word(off) {
            // SAFETY: as in `read32`; the GPU may read the word concurrently and sees either
            // value (coherent memory, aligned word store).
            unsafe { p.write_volatile(v) }
        }
    }
}
