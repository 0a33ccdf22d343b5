// SPDX-License-Identifier: GPL-2.0
//! The host's own VRAM pool (inside the reserved region, after the fixed host layout):
//! shadow instance blocks, shadow page directories and tables, the host runlists.
//!
//! A first-fit allocator over a bitmap of 4 KiB pages. Tables are at most 256 KiB (a full
//! small-page table), so runs are short and a linear scan is cheap next to the VRAM writes
//! that follow every allocation.

/// Allocation granule (and alignment) in bytes.
pub const PAGE: u64 = 0x1000;
/// Largest pool the bitmap can describe: 64 MiB of 4 KiB pages.
pub const MAX_PAGES: usize = 16384;
const WORDS: usize = MAX_PAGES / 64;

/// Pages `[base, base + pages * PAGE)` of host VRAM.
pub struct HostPool {
    base: u64,
    pages: usize,
    used: [u64; WORDS],
    free_pages: usize,
}

impl HostPool {
    /// A pool over host VRAM `[start, end)`, trimmed to whole pages and [`MAX_PAGES`].
    pub fn new(start: u64, end: u64) -> HostPool {
        let base = start.next_multiple_of(PAGE);
        let pages = (end.saturating_sub(base) / PAGE).min(MAX_PAGES as u64) as usize;
        HostPool { base, pages, used: [0; WORDS], free_pages: pages }
    }

    fn is_used(&self, page: usize) -> bool {
        self.used[page / 64] & (1 << (page % 64)) != 0
    }

    fn set(&mut self, first: usize, count: usize, used: bool) {
        for p in first..first + count {
            if used {
                self.used[p / 64] |= 1 << (p % 64);
            } else {
                self.used[p / 64] &= !(1 << (p % 64));
            }
        }
    }

    /// A run of at least `bytes`, page aligned; `None` if no run is free.
    pub fn alloc(&mut self, bytes: u64) -> Option<u64> {
        let count = usize::try_from(bytes.div_ceil(PAGE)).ok()?.max(1);
        if count > self.free_pages {
            return None;
        }
        let mut run = 0;
        for p in 0..self.pages {
            if self.is_used(p) {
                run = 0;
                continue;
            }
            run += 1;
            if run == count {
                let first = p + 1 - count;
                self.set(first, count, true);
                self.free_pages -= count;
                return Some(self.base + first as u64 * PAGE);
            }
        }
        None
    }

    /// Gives back a run from [`HostPool::alloc`] of the same `bytes`. Returns false (and
    /// changes nothing) for a run that is not entirely allocated: a caller bug to report.
    pub fn free(&mut self, addr: u64, bytes: u64) -> bool {
        let Some(off) = addr.checked_sub(self.base) else { return false };
        if off % PAGE != 0 {
            return false;
        }
        let first = (off / PAGE) as usize;
        let count = (bytes.div_ceil(PAGE) as usize).max(1);
        if first.checked_add(count).is_none_or(|end| end > self.pages) || !(first..first + count).all(|p| self.is_used(p)) {
            return false;
        }
        self.set(first, count, false);
        self.free_pages += count;
        true
    }

    /// Free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_pages as u64 * PAGE
    }
}
