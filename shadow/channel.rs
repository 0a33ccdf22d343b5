// SPDX-License-Identifier: GPL-2.0
//! Shadow channels: the instance block a guest binds is copied into host VRAM with every
//! physical pointer rewritten, and the runlists of all vGPUs are translated and merged into
//! the one host runlist.
//!
//! Instance block words are handled by a whitelist (the guest controls all 4 KiB, so
//! anything the hardware might read as an address or a privilege must be known):
//! - RAMFC (0x000..0x100): only the words nouveau fills for a GF100 channel (§8.6) and GP_GET
//!   (the model's saved ring position) are copied ([`RAMFC_COPIED`]). USERD is a guest VRAM
//!   address and is moved by `vram_base` after a bounds check of the whole USERD page; GP_BASE
//!   is a channel VA, translated by the shadow page tables. HCE_CTRL, the physical-copy gate,
//!   is always 0 (closed): a guest channel must not address anything but its own channel VM.
//!   Every other RAMFC word is 0.
//! - PDB and limit: replaced by the shadow PD and the shadow's limit.
//! - Engine context pointers (GR, PCOPY0, PCOPY1; low and high word): a low word is copied
//!   only in VIRTUAL mode (`CTX_VALID`), as a channel VA the shadow page tables confine; a
//!   PHYSICAL pointer becomes 0 (none). High words (VA bits 39:32) are copied.
//! - Everything else: zero.

use crate::gf100::{inst, pfifo, ramfc, target, userd};
use crate::memory::{GuestVram, Vram};
use crate::partition::{Slice, UNITS};

/// Why a guest instance block cannot be shadowed (the channel then stays unbound on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstError {
    /// The instance block is not a 4 KiB-aligned block inside the partition.
    InstOutside,
    /// USERD is not in VRAM.
    UserdNotVram,
    /// The USERD page is not inside the partition.
    UserdOutside,
    /// The host instance block or shadow PD is not 4 KiB aligned (a host bug).
    HostUnaligned,
}

/// What replaces the guest's address-space words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstShadow {
    /// Host address of the shadow PD: VRAM, or a bus address if `pd_sys`.
    pub pd_host: u64,
    /// The shadow PD is in host system memory (PDB target SYS_COHERENT).
    pub pd_sys: bool,
    /// Limit to write (the shadow's, see `ShadowVm::limit`).
    pub limit: u64,
}

/// RAMFC words copied from the guest as they are: nouveau's GF100 fill (§8.6, the values the
/// guest driver writes) and GP_GET, which the model keeps as the channel's saved position.
/// USERD is copied after translation; anything else in RAMFC, HCE_CTRL included, is 0.
pub const RAMFC_COPIED: [u32; 15] = [
    ramfc::SIGNATURE,
    ramfc::GP_GET,
    ramfc::ACQUIRE,
    ramfc::GP_BASE,
    ramfc::GP_BASE_HI,
    ramfc::UNK54,
    ramfc::PB_HEADER,
    ramfc::SUBDEVICE,
    ramfc::FORMATS,
    ramfc::SUBCH_ENGINE_MAP0,
    ramfc::SUBCH_ENGINE_MAP1,
    ramfc::CURRENT_ENGINE,
    ramfc::UNKB8,
    ramfc::UNKF8,
    ramfc::UNKFC,
];

/// Engine context pointers: (low word, high word).
const ENGINE_CTX: [(u32, u32); 3] =
    [(inst::GR_CTX_LO, inst::GR_CTX_HI), (inst::PCOPY0_CTX_LO, inst::PCOPY0_CTX_HI), (inst::PCOPY1_CTX_LO, inst::PCOPY1_CTX_HI)];

/// Host USERD address of the guest RAMFC USERD words, after the checks.
fn userd_to_host(lo: u32, hi: u32, slice: &Slice) -> Result<u64, InstError> {
    if lo & ramfc::USERD_TARGET_MASK != target::VRAM {
        return Err(InstError::UserdNotVram);
    }
    let guest = u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi & 0xff) << 32;
    slice.vram_to_host(guest, userd::SIZE).ok_or(InstError::UserdOutside)
}

/// The shadow value of the word at offset `off` of guest instance block `guest_inst`.
/// Reads the guest only through the partition view. Used for the initial copy and to mirror
/// a guest write into a bound instance block (an `Err` then means: unbind the channel).
pub fn shadow_inst_word<V: Vram + ?Sized>(
    mem: &GuestVram<'_, V>,
    slice: &Slice,
    guest_inst: u64,
    off: u32,
    shadow: &InstShadow,
) -> Result<u32, InstError> {
    let guest = |o: u32| {
        guest_inst
            .checked_add(u64::from(o))
            .and_then(|a| mem.read32(a))
            .ok_or(InstError::InstOutside)
    };
    Ok(match off {
        ramfc::USERD_LO => {
            let host = userd_to_host(guest(ramfc::USERD_LO)?, guest(ramfc::USERD_HI)?, slice)?;
            (host as u32 & ramfc::USERD_ADDR_MASK) | target::VRAM
        }
        ramfc::USERD_HI => {
            let host = userd_to_host(guest(ramfc::USERD_LO)?, guest(ramfc::USERD_HI)?, slice)?;
            (host >> 32) as u32
        }
        // The physical-copy gate stays closed whatever the guest wrote.
        ramfc::HCE_CTRL => 0,
        o if RAMFC_COPIED.contains(&o) => guest(o)?,
        inst::PDB_LO => (shadow.pd_host as u32 & inst::PDB_ADDR_MASK) | if shadow.pd_sys { target::SYS_COHERENT } else { target::VRAM },
        inst::PDB_HI => (shadow.pd_host >> 32) as u32,
        inst::LIMIT_LO => shadow.limit as u32,
        inst::LIMIT_HI => (shadow.limit >> 32) as u32,
        o if ENGINE_CTX.iter().any(|&(lo, _)| lo == o) => {
            let lo = guest(o)?;
            if lo & inst::CTX_VALID != 0 {
                (lo & inst::CTX_ADDR_MASK) | inst::CTX_VALID
            } else {
                0
            }
        }
        o if ENGINE_CTX.iter().any(|&(_, hi)| hi == o) => guest(o)?,
        _ => 0,
    })
}

/// Copies guest instance block `guest_inst` (guest VRAM) to `host_inst` (host VRAM, outside
/// every partition) with its pointers rewritten. Nothing is written unless every word is
/// valid, so a refused instance block leaves no half-rewritten shadow behind.
pub fn shadow_instance<V: Vram + ?Sized>(
    vram: &mut V,
    slice: &Slice,
    guest_inst: u64,
    host_inst: u64,
    shadow: &InstShadow,
) -> Result<(), InstError> {
    if !guest_inst.is_multiple_of(inst::SIZE) || slice.vram_to_host(guest_inst, inst::SIZE).is_none() {
        return Err(InstError::InstOutside);
    }
    if !host_inst.is_multiple_of(inst::SIZE) || !shadow.pd_host.is_multiple_of(inst::SIZE) {
        return Err(InstError::HostUnaligned);
    }
    // Validate first: only USERD can fail once the block is known to be inside.
    {
        let mem = GuestVram::new(&*vram, *slice);
        shadow_inst_word(&mem, slice, guest_inst, ramfc::USERD_LO, shadow)?;
    }
    for off in (0..inst::SIZE as u32).step_by(4) {
        let v = shadow_inst_word(&GuestVram::new(&*vram, *slice), slice, guest_inst, off, shadow)?;
        vram.write32(host_inst + u64::from(off), v);
    }
    Ok(())
}

/// A set of channel ids (guest or host), one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelSet(pub u128);

const _: () = assert!(pfifo::CHANNELS <= u128::BITS);

impl ChannelSet {
    /// Whether `chid` is in the set.
    pub fn contains(&self, chid: u32) -> bool {
        chid < u128::BITS && self.0 & 1u128 << chid != 0
    }

    /// Adds `chid`; false if it was already there or is not a channel id.
    pub fn insert(&mut self, chid: u32) -> bool {
        if chid >= pfifo::CHANNELS || self.contains(chid) {
            return false;
        }
        self.0 |= 1u128 << chid;
        true
    }

    /// Removes `chid`.
    pub fn remove(&mut self, chid: u32) {
        if chid < u128::BITS {
            self.0 &= !(1u128 << chid);
        }
    }

    /// The channels in both sets.
    pub fn and(self, other: ChannelSet) -> ChannelSet {
        ChannelSet(self.0 & other.0)
    }

    /// Number of channels.
    pub fn len(&self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The channel ids, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..pfifo::CHANNELS).filter(move |&c| self.contains(c))
    }
}

/// A guest runlist as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRunlist {
    /// The guest channel ids it lists that the vGPU owns.
    pub channels: ChannelSet,
    /// Entries refused: unreadable (outside the partition), a word 1 other than
    /// `pfifo::RUNLIST_ENTRY_WORD1`, a channel id the vGPU does not own, or a duplicate. The
    /// glue reports them to the guest as a SCHED_ERROR, like the hardware does.
    pub refused: u32,
}

/// Reads the guest runlist of `count` entries at guest VRAM `guest_addr`.
pub fn read_guest_runlist<V: Vram + ?Sized>(mem: &GuestVram<'_, V>, slice: &Slice, guest_addr: u64, count: u32) -> GuestRunlist {
    let mut r = GuestRunlist::default();
    for i in 0..u64::from(count.min(pfifo::RunlistSubmit::COUNT_MAX)) {
        let at = guest_addr.checked_add(i * pfifo::RUNLIST_ENTRY_SIZE);
        let chid = at.and_then(|a| mem.read32(a));
        let word1 = at.and_then(|a| mem.read32(a.checked_add(4)?));
        let ok = match (chid, word1) {
            (Some(c), Some(pfifo::RUNLIST_ENTRY_WORD1)) => slice.channel_to_host(c).is_some() && r.channels.insert(c),
            _ => false,
        };
        if !ok {
            r.refused += 1;
        }
    }
    r
}

/// One vGPU's part of the host runlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunlistPart {
    /// The vGPU's resources.
    pub slice: Slice,
    /// Its runnable, bound guest channels.
    pub channels: ChannelSet,
}

/// Writes the host runlist at host VRAM `host_addr` (room for `capacity` entries): the
/// channels of all parts, interleaved round-robin across vGPUs so that PFIFO's time slicing
/// alternates between them. Guest ids the slice does not own are skipped. Returns the number
/// of entries written (for `pfifo::RunlistSubmit`).
pub fn write_host_runlist<V: Vram + ?Sized>(vram: &mut V, host_addr: u64, capacity: u32, parts: &[RunlistPart]) -> u32 {
    let mut n = 0u32;
    // One pending set per vGPU; there are at most `UNITS` vGPUs on a GPU.
    let mut rest = [0u128; UNITS as usize];
    let parts = &parts[..parts.len().min(rest.len())];
    for (r, p) in rest.iter_mut().zip(parts) {
        *r = p.channels.0;
    }
    while n < capacity && rest.iter().any(|&r| r != 0) {
        for (r, p) in rest.iter_mut().zip(parts) {
            if *r == 0 || n >= capacity {
                continue;
            }
            let chid = r.trailing_zeros();
            *r &= !(1u128 << chid);
            let Some(host) = p.slice.channel_to_host(chid) else { continue };
            let at = host_addr + u64::from(n) * pfifo::RUNLIST_ENTRY_SIZE;
            vram.write32(at, host);
            vram.write32(at + 4, pfifo::RUNLIST_ENTRY_WORD1);
            n += 1;
        }
    }
    n
}
