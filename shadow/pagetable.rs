// SPDX-License-Identifier: GPL-2.0
//! GF100 page tables (gf100-interface.md §7): entry formats, the software walker, and the
//! validation that turns one guest entry into one shadow entry in host terms.
//!
//! The walker reads guest tables only through [`GuestVram`], so a table pointer outside the
//! partition reads as "absent", never as host memory. The validator is the only place where a
//! guest address becomes a host address: VRAM targets must lie wholly inside the partition
//! (then they move by `vram_base`), system-memory targets go through [`SysMem::pin`], and
//! everything else becomes [`REFUSED_PTE`], which the MMU faults on in the guest's own
//! channel.
//!
//! Big pages are 128 KiB on every vGPU: the big-page size is a global MMU setting
//! (`mmu::CTRL` bit 0) that the host owns, so the vGPU's CTRL reads it as 0.

use crate::gf100::{inst, mmu, target, vm};
use crate::memory::{GuestVram, SysMem, Vram};
use crate::partition::Slice;

/// Big-page shift on every vGPU (128 KiB).
pub const BIG_PAGE_SHIFT: u32 = vm::BIG_PAGE_SHIFT_128K;
/// VA bits one PDE covers (128 MiB).
pub const PDE_SHIFT: u32 = BIG_PAGE_SHIFT + vm::PDE_SPAN_EXTRA_SHIFT;
/// Bytes of VA one PDE covers.
pub const PDE_SPAN: u64 = 1 << PDE_SHIFT;
/// Highest VA the MMU translates (40-bit address space).
pub const VA_MAX: u64 = (1 << vm::VA_BITS) - 1;
/// Highest table or page address a PDE/PTE address field can hold (28 bits of 4 KiB units).
const ADDR_FIELD_LIMIT: u64 = (vm::PDE_ADDR_MASK + 1) << vm::SMALL_PAGE_SHIFT;

/// The entry the shadow writes for a guest PTE it refuses (VRAM outside the partition, an
/// unpinnable system page, a peer target): not VALID, so every GF100 faults on it in the
/// guest's own channel. (An aperture trick is not portable: envytools' `g80_mem_target`
/// leaves target 1 as "some other sysram", so a real card may reach memory through it.)
/// Where a dual PDE also has a big-page table, the MMU may use the big page instead; that
/// entry went through the same validation, so the access stays inside the vGPU's memory.
pub const REFUSED_PTE: u64 = 0;

/// Page size of a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB pages (the PDE's small-page table, word 1).
    Small,
    /// 128 KiB pages (the PDE's big-page table, word 0).
    Big,
}

impl PageSize {
    /// Both sizes, in the order the shadow keeps their tables.
    pub const ALL: [PageSize; 2] = [PageSize::Big, PageSize::Small];

    /// log2 of the page size.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Small => vm::SMALL_PAGE_SHIFT,
            PageSize::Big => BIG_PAGE_SHIFT,
        }
    }

    /// Page size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// Entries of a full table (one PDE span).
    pub const fn full_entries(self) -> u64 {
        PDE_SPAN >> self.shift()
    }

    /// Index of this size in [`PageSize::ALL`].
    pub const fn index(self) -> usize {
        match self {
            PageSize::Big => 0,
            PageSize::Small => 1,
        }
    }
}

/// Where a table or page lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aperture {
    /// Video memory (guest "physical" VRAM address).
    Vram,
    /// System memory, snooped.
    SysCoherent,
    /// System memory, not snooped.
    SysNonCoherent,
    /// Another GPU's memory (PTEs only); never valid on a vGPU.
    Peer,
}

/// The address space an instance block names: its page directory and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmDesc {
    /// Guest VRAM address of the page directory.
    pub pd: u64,
    /// Highest valid VA (inclusive), capped at [`VA_MAX`].
    pub limit: u64,
}

impl VmDesc {
    /// Decodes the PDB and limit words of an instance block (`inst::PDB_LO`..`LIMIT_HI`).
    /// `None` for a PD outside VRAM: system-memory page directories are not shadowed.
    pub fn from_words(pdb_lo: u32, pdb_hi: u32, limit_lo: u32, limit_hi: u32) -> Option<VmDesc> {
        if pdb_lo & inst::PDB_TARGET_MASK != target::VRAM {
            return None;
        }
        let pd = u64::from(pdb_lo & inst::PDB_ADDR_MASK) | u64::from(pdb_hi & 0xff) << 32;
        let limit = (u64::from(limit_lo) | u64::from(limit_hi & 0xff) << 32).min(VA_MAX);
        Some(VmDesc { pd, limit })
    }

    /// Reads the VM of the instance block at guest VRAM address `inst_addr`.
    pub fn read<V: Vram + ?Sized>(mem: &GuestVram<'_, V>, inst_addr: u64) -> Option<VmDesc> {
        let w = |off: u32| mem.read32(inst_addr.checked_add(u64::from(off))?);
        VmDesc::from_words(w(inst::PDB_LO)?, w(inst::PDB_HI)?, w(inst::LIMIT_LO)?, w(inst::LIMIT_HI)?)
    }

    /// Number of PDEs the limit makes reachable: the PD is read up to here and no further.
    pub fn pde_count(&self) -> u64 {
        (self.limit >> PDE_SHIFT) + 1
    }

    /// Entries of the `size` table of PDE `pde` the MMU can reach: cut by the limit and by
    /// the PDE's SIZE field (`size_shift`, which shrinks both tables).
    pub fn reachable(&self, pde: u64, size: PageSize, size_shift: u32) -> u64 {
        let start = pde.saturating_mul(PDE_SPAN);
        if start > self.limit {
            return 0;
        }
        let by_limit = ((self.limit - start) >> size.shift()) + 1;
        by_limit.min(size.full_entries() >> size_shift)
    }
}

/// One half of a PDE: a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRef {
    /// Table address (guest VRAM, or system memory).
    pub addr: u64,
    /// Where the table lives.
    pub aperture: Aperture,
    /// VOL bit (uncached walks).
    pub vol: bool,
}

/// A decoded PDE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pde {
    /// Big-page table (word 0).
    pub big: Option<TableRef>,
    /// Small-page table (word 1).
    pub small: Option<TableRef>,
    /// SIZE field: both tables cover `full >> size_shift` entries.
    pub size_shift: u32,
}

fn pde_aperture(aper: u64) -> Option<Aperture> {
    match aper & vm::PDE_APER_MASK {
        vm::PDE_APER_VRAM => Some(Aperture::Vram),
        vm::PDE_APER_SYS_COHERENT => Some(Aperture::SysCoherent),
        vm::PDE_APER_SYS_NONCOHERENT => Some(Aperture::SysNonCoherent),
        _ => None,
    }
}

fn pde_aperture_bits(a: Aperture) -> u64 {
    match a {
        Aperture::Vram => vm::PDE_APER_VRAM,
        Aperture::SysCoherent => vm::PDE_APER_SYS_COHERENT,
        Aperture::SysNonCoherent | Aperture::Peer => vm::PDE_APER_SYS_NONCOHERENT,
    }
}

impl Pde {
    /// Decodes a raw PDE.
    pub fn decode(raw: u64) -> Pde {
        let half = |word: u64, vol: u64| {
            pde_aperture(word).map(|aperture| TableRef {
                addr: ((word >> vm::PDE_BIG_ADDR_SHIFT) & vm::PDE_ADDR_MASK) << vm::SMALL_PAGE_SHIFT,
                aperture,
                vol: raw & vol != 0,
            })
        };
        Pde {
            big: half(raw & 0xffff_ffff, vm::PDE_VOL_BIG),
            small: half(raw >> 32, vm::PDE_VOL_SMALL),
            size_shift: ((raw >> vm::PDE_SIZE_SHIFT) & vm::PDE_SIZE_MASK) as u32,
        }
    }

    /// The table of one page size.
    pub fn table(&self, size: PageSize) -> Option<TableRef> {
        match size {
            PageSize::Big => self.big,
            PageSize::Small => self.small,
        }
    }

    /// Encodes this PDE (the inverse of [`Pde::decode`] for representable addresses).
    pub fn encode(&self) -> u64 {
        let half = |t: Option<TableRef>| match t {
            Some(t) => ((t.addr >> vm::SMALL_PAGE_SHIFT) & vm::PDE_ADDR_MASK) << vm::PDE_BIG_ADDR_SHIFT
                | pde_aperture_bits(t.aperture),
            None => 0,
        };
        let mut v = half(self.big) | half(self.small) << 32;
        v |= (u64::from(self.size_shift) & vm::PDE_SIZE_MASK) << vm::PDE_SIZE_SHIFT;
        if self.big.is_some_and(|t| t.vol) {
            v |= vm::PDE_VOL_BIG;
        }
        if self.small.is_some_and(|t| t.vol) {
            v |= vm::PDE_VOL_SMALL;
        }
        v
    }
}

/// A decoded, valid PTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    /// Page address (guest VRAM, system bus address, or a peer's).
    pub addr: u64,
    /// Where the page lives.
    pub aperture: Aperture,
    /// Writes fault.
    pub read_only: bool,
    /// PRIVILEGE bit.
    pub privileged: bool,
    /// ENCRYPTED bit (system memory).
    pub encrypted: bool,
    /// VOL bit.
    pub vol: bool,
    /// Storage kind.
    pub kind: u8,
}

impl Pte {
    /// Decodes a raw PTE; `None` if it is not valid. The whole 28-bit address field is kept,
    /// so a VRAM PTE with peer-index bits set decodes to an address far beyond any partition.
    /// Compression tags are not decoded: they index a host-global resource, so the shadow
    /// never passes them on.
    pub fn decode(raw: u64) -> Option<Pte> {
        if raw & vm::PTE_VALID == 0 {
            return None;
        }
        let aperture = match (raw >> vm::PTE_APER_SHIFT) & vm::PTE_APER_MASK {
            vm::PTE_APER_VRAM => Aperture::Vram,
            vm::PTE_APER_PEER => Aperture::Peer,
            vm::PTE_APER_SYS_COHERENT => Aperture::SysCoherent,
            _ => Aperture::SysNonCoherent,
        };
        Some(Pte {
            addr: ((raw >> vm::PTE_ADDR_SHIFT) & vm::PTE_ADDR_MASK) << vm::SMALL_PAGE_SHIFT,
            aperture,
            read_only: raw & vm::PTE_READ_ONLY != 0,
            privileged: raw & vm::PTE_PRIVILEGE != 0,
            encrypted: raw & vm::PTE_ENCRYPTED != 0,
            vol: raw & vm::PTE_VOL != 0,
            kind: ((raw >> vm::PTE_KIND_SHIFT) & vm::PTE_KIND_MASK) as u8,
        })
    }

    /// Encodes this PTE (no compression tag).
    pub fn encode(&self) -> u64 {
        let aper = match self.aperture {
            Aperture::Vram => vm::PTE_APER_VRAM,
            Aperture::Peer => vm::PTE_APER_PEER,
            Aperture::SysCoherent => vm::PTE_APER_SYS_COHERENT,
            Aperture::SysNonCoherent => vm::PTE_APER_SYS_NONCOHERENT,
        };
        let flag = |b: bool, bit: u64| if b { bit } else { 0 };
        ((self.addr >> vm::SMALL_PAGE_SHIFT) & vm::PTE_ADDR_MASK) << vm::PTE_ADDR_SHIFT
            | vm::PTE_VALID
            | flag(self.privileged, vm::PTE_PRIVILEGE)
            | flag(self.read_only, vm::PTE_READ_ONLY)
            | flag(self.encrypted, vm::PTE_ENCRYPTED)
            | flag(self.vol, vm::PTE_VOL)
            | aper << vm::PTE_APER_SHIFT
            | u64::from(self.kind) << vm::PTE_KIND_SHIFT
    }
}

/// Why a walk failed, as the MMU reports it (`mmu::FAULT_*` via [`Fault::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// VA beyond the limit.
    LimitExceeded,
    /// The PDE has no table.
    PtNotPresent,
    /// The index is beyond a table shrunk by the PDE's SIZE field.
    PtTooShort,
    /// No valid PTE.
    PageNotPresent,
    /// A table or page that cannot be reached (outside the partition, system memory, peer).
    BadPhysical,
}

impl Fault {
    /// The MMU fault reason code.
    pub const fn reason(self) -> u32 {
        match self {
            Fault::LimitExceeded => mmu::FAULT_VM_LIMIT_EXCEEDED,
            Fault::PtNotPresent => mmu::FAULT_PT_NOT_PRESENT,
            Fault::PtTooShort => mmu::FAULT_PT_TOO_SHORT,
            Fault::PageNotPresent => mmu::FAULT_PAGE_NOT_PRESENT,
            Fault::BadPhysical => mmu::FAULT_BAD_PHYSICAL,
        }
    }
}

/// Where a VA lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Address of the byte (in the PTE's aperture's address space).
    pub addr: u64,
    /// The PTE's aperture.
    pub aperture: Aperture,
    /// Writes fault.
    pub read_only: bool,
    /// Which table mapped it.
    pub size: PageSize,
}

/// Walks the guest tables of `vmd` for `va`, as the GF100 MMU does (a valid small-page PTE
/// wins over the big-page PTE of a dual PDE). Only VRAM tables inside the partition are read;
/// used to resolve trapped BAR1/BAR3 accesses through the guest's own BAR page tables.
pub fn translate<V: Vram + ?Sized>(mem: &GuestVram<'_, V>, vmd: &VmDesc, va: u64) -> Result<Translation, Fault> {
    if va > vmd.limit {
        return Err(Fault::LimitExceeded);
    }
    let pde_index = va >> PDE_SHIFT;
    let raw = pde_index
        .checked_mul(vm::PDE_SIZE)
        .and_then(|o| vmd.pd.checked_add(o))
        .and_then(|a| mem.read64(a))
        .ok_or(Fault::BadPhysical)?;
    let pde = Pde::decode(raw);
    if pde.big.is_none() && pde.small.is_none() {
        return Err(Fault::PtNotPresent);
    }
    let mut fault = Fault::PageNotPresent;
    for size in [PageSize::Small, PageSize::Big] {
        let Some(t) = pde.table(size) else { continue };
        let index = (va >> size.shift()) & (size.full_entries() - 1);
        if index >= size.full_entries() >> pde.size_shift {
            fault = Fault::PtTooShort;
            continue;
        }
        if t.aperture != Aperture::Vram {
            return Err(Fault::BadPhysical);
        }
        let raw = t.addr.checked_add(index * vm::PTE_SIZE).and_then(|a| mem.read64(a)).ok_or(Fault::BadPhysical)?;
        fault = Fault::PageNotPresent;
        if let Some(pte) = Pte::decode(raw) {
            if pte.aperture == Aperture::Peer {
                return Err(Fault::BadPhysical);
            }
            let within = va & (size.bytes() - 1) & !(vm::SMALL_PAGE_SIZE - 1);
            return Ok(Translation {
                addr: pte.addr.wrapping_add(within) | (va & (vm::SMALL_PAGE_SIZE - 1)),
                aperture: pte.aperture,
                read_only: pte.read_only,
                size,
            });
        }
    }
    Err(fault)
}

/// Host VRAM address of the guest table `[addr, addr + entries * 8)`, if it is a VRAM table
/// wholly inside the partition and 4 KiB aligned (tables are; an unaligned pointer is not a
/// table the MMU could have been given).
pub fn table_to_host(t: &TableRef, entries: u64, slice: &Slice) -> Option<u64> {
    if t.aperture != Aperture::Vram || !t.addr.is_multiple_of(vm::TABLE_ALIGN) {
        return None;
    }
    slice.vram_to_host(t.addr, entries.checked_mul(vm::PTE_SIZE)?)
}

/// The shadow PTE for guest PTE `raw` in a table of `size` pages: 0 for an invalid entry, the
/// translated entry for a page wholly inside the partition or a pinnable system range, and
/// [`REFUSED_PTE`] for everything else.
pub fn shadow_pte<S: SysMem + ?Sized>(raw: u64, size: PageSize, slice: &Slice, sys: &mut S) -> u64 {
    let Some(pte) = Pte::decode(raw) else { return 0 };
    let host = match pte.aperture {
        Aperture::Vram => slice.vram_to_host(pte.addr, size.bytes()),
        Aperture::SysCoherent | Aperture::SysNonCoherent => {
            // A big system page must be one contiguous, aligned host range.
            if pte.addr % size.bytes() != 0 {
                None
            } else {
                sys.pin(pte.addr, size.bytes()).filter(|h| h % size.bytes() == 0)
            }
        }
        Aperture::Peer => None,
    };
    match host.filter(|&h| h.checked_add(size.bytes()).is_some_and(|end| end <= ADDR_FIELD_LIMIT)) {
        Some(addr) => Pte { addr, ..pte }.encode(),
        None => REFUSED_PTE,
    }
}
