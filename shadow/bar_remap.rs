// SPDX-License-Identifier: GPL-2.0
//! BAR remapping: which guest BAR pages may be mapped straight onto the host's BAR aperture
//! instead of being trapped (the pure decision; the mediator feeds it the guest's BAR page
//! table walk, the kernel inserts the page it names or refuses the fault).
//!
//! A VFIO mmap cannot trap single accesses: a page of an mmapped area is either mapped or the
//! fault fails (SIGBUS for the user, a dead VM for QEMU). So the decision is "map this host
//! page" or "refuse", never "emulate": a page may map only if it is the guest's own VRAM, in
//! its partition, through a valid writable VRAM PTE, and the host aperture window covers it.
//! Everything else (unmapped, system memory, read-only, outside the partition, another
//! vGPU's or the host's VRAM, beyond the window) is refused, so no direct mapping ever reaches
//! memory the guest does not own. What the mediator must still see (the doorbell) lives in
//! BAR1, which is never offered for mmap (Choice, see uapi/sysfs-gpuvm `bar_remap`); guest
//! page tables reached through a mapped page are re-read at every sync (their shadows lose
//! write tracking, `ShadowVm::untrack`), GPUvm's "remap + re-read" combination.

use crate::memory::{GuestVram, Vram};
use crate::pagetable::{self, Aperture, Fault, Translation, VmDesc};
use crate::partition::Slice;
use crate::vregs::Bar;

/// Bytes of one mapping unit (the CPU page the kernel inserts, and the guest BAR page the
/// mediator walks).
pub const PAGE: u64 = 0x1000;

/// A window of a host BAR that maps host VRAM linearly: BAR offset `bar_off + x` reaches host
/// VRAM `vram_base + x` for `x < len` (set up at bring-up, `host_init::map_remap_window`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostWindow {
    /// Offset of the window in the host BAR.
    pub bar_off: u64,
    /// Host VRAM address at the start of the window.
    pub vram_base: u64,
    /// Bytes covered.
    pub len: u64,
}

impl HostWindow {
    /// Host BAR offset of the page at host VRAM `host_page` (page aligned), if the window
    /// covers the whole page.
    pub fn bar_offset(&self, host_page: u64) -> Option<u64> {
        let rel = host_page.checked_sub(self.vram_base)?;
        let end = rel.checked_add(PAGE)?;
        (host_page.is_multiple_of(PAGE) && end <= self.len).then(|| self.bar_off + rel)
    }
}

/// Why a fault on a mapped BAR page is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `bar_remap` is off, or this BAR is never mapped (BAR1, see the module comment).
    NotOffered,
    /// The offset lies outside the vGPU's BAR.
    OutsideBar,
    /// The guest's BAR page tables do not map the page (or its tables are not readable).
    NotMapped,
    /// The PTE names system memory (only VRAM is mapped; system memory stays trapped).
    SystemMemory,
    /// The PTE is read-only (a direct mapping would let writes through).
    ReadOnly,
    /// The target lies outside the vGPU's VRAM partition (another vGPU's or the host's).
    OutsidePartition,
    /// The host aperture window does not cover the page.
    NotCovered,
}

/// The decision for one faulting guest BAR page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapDecision {
    /// Map the host BAR page at this offset of the host BAR holding the window.
    Map {
        /// Offset in the host BAR (page aligned).
        host_bar_off: u64,
        /// The guest VRAM page behind it.
        guest_page: u64,
    },
    /// Refuse the fault.
    Refuse(Refusal),
}

/// Decides for a guest BAR page whose walk through the guest's BAR page tables gave `walk`
/// (`None` for a BAR in direct mode: BAR offset = guest VRAM address, `direct_page`).
pub fn decide(walk: Option<Result<Translation, Fault>>, direct_page: u64, slice: &Slice, window: &HostWindow) -> MapDecision {
    let guest_page = match walk {
        None => direct_page,
        Some(Err(_)) => return MapDecision::Refuse(Refusal::NotMapped),
        Some(Ok(t)) => {
            if t.aperture != Aperture::Vram {
                return MapDecision::Refuse(Refusal::SystemMemory);
            }
            if t.read_only {
                return MapDecision::Refuse(Refusal::ReadOnly);
            }
            t.addr & !(PAGE - 1)
        }
    };
    let Some(host_page) = slice.vram_to_host(guest_page, PAGE) else {
        return MapDecision::Refuse(Refusal::OutsidePartition);
    };
    match window.bar_offset(host_page) {
        Some(host_bar_off) => MapDecision::Map { host_bar_off, guest_page },
        None => MapDecision::Refuse(Refusal::NotCovered),
    }
}

/// What a fault needs to know of one guest BAR, as the mediator last published it (the kernel
/// keeps a copy under its own lock, so a fault never waits for the vGPU's state lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarView {
    /// `bar_remap` is on for the vGPU.
    pub on: bool,
    /// Which BAR.
    pub bar: Bar,
    /// The guest's BAR address space (None: direct mode).
    pub desc: Option<VmDesc>,
    /// The vGPU's BAR size in bytes.
    pub size: u64,
}

/// The decision for a fault at offset `off` of the BAR `view` describes: walks the guest's
/// BAR page tables (reading guest VRAM through the partition view only), then [`decide`].
/// Only BAR3 is offered (BAR1 holds the doorbells, which the mediator must see).
pub fn resolve<V: Vram + ?Sized>(vram: &V, slice: &Slice, view: &BarView, off: u64, window: &HostWindow) -> MapDecision {
    if view.bar != Bar::Bar3 || !view.on {
        return MapDecision::Refuse(Refusal::NotOffered);
    }
    if off >= view.size {
        return MapDecision::Refuse(Refusal::OutsideBar);
    }
    let page = off & !(PAGE - 1);
    let walk = view.desc.map(|desc| pagetable::translate(&GuestVram::new(vram, *slice), &desc, page));
    decide(walk, page, slice, window)
}
