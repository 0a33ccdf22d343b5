// SPDX-License-Identifier: GPL-2.0
//! How shadow/ reaches memory from the kernel: host VRAM (the host's reserved region through
//! its BAR3 identity map, everything else through the PRAMIN window), the host VRAM pool for
//! shadow tables, and guest system memory pinned through VFIO.

use crate::{
    host_pool::HostPool,
    memory::{SysMem, Vram},
    shadow_vm::TableAlloc,
    host_init, vfio, vgpu, Bar0, GpuShared, HostBar0,
};
use core::cell::Cell;
use kernel::{io::Io, prelude::*, rbtree::RBTree, sync::MutexGuard};

/// Where the PRAMIN window points (None: unknown, e.g. after probe). A `Cell` because reads
/// (`&self` in [`Vram`]) may have to move the window; the mutex around it makes that safe.
pub(crate) struct PraminWindow {
    base: Cell<Option<u32>>,
}

impl PraminWindow {
    pub(crate) const fn new() -> Self {
        Self { base: Cell::new(None) }
    }
}

/// Host VRAM access while holding the PRAMIN window: syncs and guest-VRAM accesses of all
/// vGPUs of a GPU serialise on it. The host's reserved region goes through the host BAR3
/// identity map (one MMIO per access); the rest through PRAMIN (plus a base write whenever
/// the access leaves the current 64 KiB-aligned 1 MiB window).
pub(crate) struct HostVram<'a> {
    gpu: &'a GpuShared,
    window: MutexGuard<'a, PraminWindow>,
}

impl<'a> HostVram<'a> {
    pub(crate) fn new(gpu: &'a GpuShared) -> Self {
        Self { gpu, window: gpu.pramin.lock() }
    }

    /// BAR0 offset of host VRAM `pa` in the PRAMIN window, moving the window if needed.
    fn pramin_offset(&self, bar0: &Bar0<'_>, pa: u64) -> usize {
        host_init::pramin_window(&HostBar0(bar0), &self.window.base, pa) as usize
    }

    fn in_bar3(&self, pa: u64) -> bool {
        pa.checked_add(4).is_some_and(|end| end <= self.gpu.bar3_mapped)
    }
}

impl Vram for HostVram<'_> {
    fn read32(&self, pa: u64) -> u32 {
        if self.in_bar3(pa) {
            return self.gpu.bar3.try_access().and_then(|b| b.try_read32(pa as usize).ok()).unwrap_or(u32::MAX);
        }
        let Some(bar0) = self.gpu.bar0.try_access() else { return u32::MAX };
        let off = self.pramin_offset(&bar0, pa);
        bar0.try_read32(off).unwrap_or(u32::MAX)
    }

    fn write32(&mut self, pa: u64, v: u32) {
        if self.in_bar3(pa) {
            if let Some(b) = self.gpu.bar3.try_access() {
                let _ = b.try_write32(v, pa as usize);
            }
            return;
        }
        let Some(bar0) = self.gpu.bar0.try_access() else { return };
        let off = self.pramin_offset(&bar0, pa);
        let _ = bar0.try_write32(v, off);
    }
}

/// Shadow tables come from the host pool.
pub(crate) struct HostTables<'a>(pub(crate) MutexGuard<'a, HostPool>);

impl TableAlloc for HostTables<'_> {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        self.0.alloc(bytes)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        // A refused free is an accounting bug; the pool stays consistent either way.
        let _ = self.0.free(addr, bytes);
    }
}

/// Guest system memory pinned through VFIO: IOVA page -> pinned page, kept until the IOVA is
/// unmapped or the device closes.
pub(crate) struct PinCache {
    pages: RBTree<u64, vfio::PinnedPage<vgpu::Vgpu>>,
}

impl PinCache {
    pub(crate) fn new() -> Self {
        Self { pages: RBTree::new() }
    }

    /// Whether any page in `[iova, iova + len)` is pinned.
    pub(crate) fn any_in(&self, iova: u64, len: u64) -> bool {
        self.pages.cursor_lower_bound(&(iova & !(PAGE - 1))).is_some_and(|c| *c.current().0 < iova.saturating_add(len))
    }

    /// Unpins every page in `[iova, iova + len)`; returns how many were pinned.
    pub(crate) fn unpin_range(&mut self, iova: u64, len: u64) -> u64 {
        let end = iova.saturating_add(len);
        let mut n = 0;
        loop {
            let Some(key) = self.pages.cursor_lower_bound(&iova).map(|c| *c.current().0) else { break };
            if key >= end {
                break;
            }
            // Dropping the guard unpins the page.
            self.pages.remove(&key);
            n += 1;
        }
        n
    }
}

/// [`SysMem`] of one open vGPU.
pub(crate) struct VgpuSysMem<'a> {
    pub(crate) dev: &'a vfio::Device<vgpu::Vgpu>,
    pub(crate) pins: &'a mut PinCache,
    /// An IOVA range being unmapped: refused, so shadows stop pointing into it.
    pub(crate) exclude: Option<(u64, u64)>,
}

const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

impl VgpuSysMem<'_> {
    fn pin_one(&mut self, page_iova: u64) -> Option<u64> {
        if let Some(pinned) = self.pins.pages.get(&page_iova) {
            return Some(pinned.phys());
        }
        let pinned = self.dev.pin_page(page_iova, true).ok()?;
        let phys = pinned.phys();
        // On failure the guard is dropped, which unpins the page.
        self.pins.pages.try_create_and_insert(page_iova, pinned, GFP_KERNEL).ok()?;
        Some(phys)
    }
}

impl SysMem for VgpuSysMem<'_> {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        let first = iova & !(PAGE - 1);
        let end = iova.checked_add(len.max(1))?;
        if let Some((x, xlen)) = self.exclude {
            if first < x.saturating_add(xlen) && x < end {
                return None;
            }
        }
        let base = self.pin_one(first)?;
        // The GPU sees one contiguous range: every page after the first must follow it.
        let mut page = first + PAGE;
        while page < end {
            if self.pin_one(page)? != base + (page - first) {
                return None;
            }
            page += PAGE;
        }
        Some(base + (iova - first))
    }
}
