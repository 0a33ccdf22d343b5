// SPDX-License-Identifier: GPL-2.0
//! BAR remapping: which guest BAR pages may be mapped straight onto the host's BAR aperture
//! instead of being trapped (the pure decision; the mediator feeds it the guest's BAR page
//! table walk, the kernel points a host BAR1 page at the target and inserts it, or refuses the
//! fault).
//!
//! Each vGPU owns a run of host BAR1 pages, its *slots* (`host_init::remap_slots`), as many as
//! its BAR3 has pages: guest BAR3 page `i` is shown through slot `i`, whose host small-page PTE
//! is pointed at the host VRAM page the guest's BAR3 PTE names (GPUvm's BAR remapping: the
//! guest's BAR page table shadowed into the host's BAR VM), then the slot's page frame is
//! inserted into the user's mapping.
//!
//! A VFIO mmap cannot trap single accesses: a page of an mmapped area is either mapped or the
//! fault fails (SIGBUS for the user, a dead VM for QEMU). So the decision is "map this host
//! page" or "refuse", never "emulate": a page maps only if it is the guest's own VRAM, in its
//! partition, through a valid writable VRAM PTE. Everything else (unmapped, system memory,
//! read-only, outside the partition: another vGPU's or the host's VRAM) is refused, so no
//! direct mapping ever reaches memory the guest does not own. What the mediator must still
//! see (the doorbell) lives in BAR1, which is never offered for mmap (Choice, see
//! uapi/sysfs-gpuvm `bar_remap`); guest page tables written through a mapped page are re-read
//! at every sync (the shadows run without write tracking while `bar_remap` is on), GPUvm's
//! "remap + re-read" combination.

use crate::memory::{GuestVram, Vram};
use crate::pagetable::{self, Aperture, Fault, Translation, VmDesc};
use crate::partition::Slice;
use crate::vregs::Bar;

/// Bytes of one mapping unit (the CPU page the kernel inserts, the guest BAR page the
/// mediator walks, and the host BAR1 small page of a slot).
pub const PAGE: u64 = 0x1000;

/// A vGPU's slots: host BAR1 `[bar_off, bar_off + len)`, one page per guest BAR3 page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// Host BAR1 offset of slot 0.
    pub bar_off: u64,
    /// Bytes of slots.
    pub len: u64,
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
    /// The vGPU has no slot for this page (its BAR is larger than its slots).
    NoSlot,
}

/// The decision for one faulting guest BAR page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapDecision {
    /// Point the slot at `host_bar1_off` at host VRAM `host_page`, then map the slot.
    Map {
        /// The slot: offset in the host BAR1 (page aligned).
        host_bar1_off: u64,
        /// The host VRAM page the slot must show.
        host_page: u64,
        /// The guest VRAM page behind it.
        guest_page: u64,
    },
    /// Refuse the fault.
    Refuse(Refusal),
}

/// Decides for guest BAR page `page` (page aligned) whose walk through the guest's BAR page
/// tables gave `walk` (`None` for a BAR in direct mode: offset = guest VRAM address).
pub fn decide(walk: Option<Result<Translation, Fault>>, page: u64, slice: &Slice, slots: &Slots) -> MapDecision {
    let guest_page = match walk {
        None => page,
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
    match page.checked_add(PAGE) {
        Some(end) if end <= slots.len => MapDecision::Map { host_bar1_off: slots.bar_off + page, host_page, guest_page },
        _ => MapDecision::Refuse(Refusal::NoSlot),
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
pub fn resolve<V: Vram + ?Sized>(vram: &V, slice: &Slice, view: &BarView, off: u64, slots: &Slots) -> MapDecision {
    if view.bar != Bar::Bar3 || !view.on {
        return MapDecision::Refuse(Refusal::NotOffered);
    }
    if off >= view.size {
        return MapDecision::Refuse(Refusal::OutsideBar);
    }
    let page = off & !(PAGE - 1);
    let walk = view.desc.map(|desc| pagetable::translate(&GuestVram::new(vram, *slice), &desc, page));
    decide(walk, page, slice, slots)
}
