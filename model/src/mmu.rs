//! GF100 MMU: two-level page walk (§7), per-VM contexts from instance blocks, and a TLB that
//! keeps translations until the driver flushes them.
//!
//! Model choices (see also uapi/gf100.rs):
//! - A VM context (PDB + limit) is read from its instance block when the VM is bound
//!   (0x1704/0x1714 write, channel load) and re-read after every TLB flush; editing an
//!   instance block without a flush is not seen.
//! - The TLB caches successful 4 KiB translations keyed by (PDB, page). A PTE/PDE edit is not
//!   seen until a flush covering that PDB (0x100cb8/0x100cbc or host MEM_OP). Faults are not
//!   cached. The TLB is large (it is emptied only if it exceeds `TLB_CAPACITY` entries).
//! - Dual PDEs: a valid small-page PTE wins over the big-page PTE for the same address.
//! - PDE SIZE shrinks both tables (`FAULT_PT_TOO_SHORT` beyond them).

use std::collections::HashMap;

use gpuvm_uapi::gf100::{inst, mmu, vm};

use crate::bus::{Aperture, PhysAddr, PhysBus};

/// Entries before the TLB is emptied (a real TLB evicts; this keeps memory bounded).
const TLB_CAPACITY: usize = 1 << 20;

/// Page-table base and limit of one address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmContext {
    pub pdb: PhysAddr,
    /// Highest valid VA (inclusive).
    pub limit: u64,
}

impl VmContext {
    /// Reads PDB and limit from the instance block at `inst_pa`. `None` if the instance block
    /// cannot be read or names an invalid PD target.
    pub fn load(bus: &PhysBus, inst_pa: PhysAddr) -> Option<VmContext> {
        let lo = bus.read32(inst_pa.offset(inst::PDB_LO as u64))?;
        let hi = bus.read32(inst_pa.offset(inst::PDB_HI as u64))?;
        let lim_lo = bus.read32(inst_pa.offset(inst::LIMIT_LO as u64))?;
        let lim_hi = bus.read32(inst_pa.offset(inst::LIMIT_HI as u64))?;
        let pd_addr = (lo & inst::PDB_ADDR_MASK) as u64 | ((hi & 0xff) as u64) << 32;
        let pdb = PhysAddr::from_target(lo & inst::PDB_TARGET_MASK, pd_addr)?;
        Some(VmContext {
            pdb,
            limit: lim_lo as u64 | ((lim_hi & 0xff) as u64) << 32,
        })
    }
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// `mmu::FAULT_*`.
    pub reason: u32,
    pub va: u64,
    pub write: bool,
}

#[derive(Clone, Copy, Debug)]
struct TlbEntry {
    page: PhysAddr,
    read_only: bool,
}

fn pdb_key(pdb: PhysAddr) -> u64 {
    pdb.addr | u64::from(pdb.aperture == Aperture::Sys)
}

/// The translation cache plus the walker. Entries are grouped by address space so that a
/// per-PDB flush costs nothing for the other address spaces.
#[derive(Default)]
pub struct Tlb {
    spaces: HashMap<u64, HashMap<u64, TlbEntry>>,
    len: usize,
    pub misses: u64,
}

impl Tlb {
    /// Drops every cached translation of the address space rooted at `pdb`.
    pub fn flush_pdb(&mut self, pdb: PhysAddr) {
        if let Some(space) = self.spaces.remove(&pdb_key(pdb)) {
            self.len -= space.len();
        }
    }

    pub fn flush_all(&mut self) {
        self.spaces.clear();
        self.len = 0;
    }

    /// Translates `va` for an access of the given kind, consulting the cache first.
    pub fn translate(
        &mut self,
        bus: &PhysBus,
        ctx: &VmContext,
        big_page_shift: u32,
        va: u64,
        write: bool,
    ) -> Result<PhysAddr, Fault> {
        let fault = |reason| Fault { reason, va, write };
        if va > ctx.limit || va >> vm::VA_BITS != 0 {
            return Err(fault(mmu::FAULT_VM_LIMIT_EXCEEDED));
        }
        let (space, page) = (pdb_key(ctx.pdb), va >> vm::SMALL_PAGE_SHIFT);
        let cached = self.spaces.get(&space).and_then(|s| s.get(&page)).copied();
        let entry = match cached {
            Some(e) => e,
            None => {
                self.misses += 1;
                let e = walk(bus, ctx.pdb, big_page_shift, va).map_err(fault)?;
                if self.len >= TLB_CAPACITY {
                    self.flush_all();
                }
                self.spaces.entry(space).or_default().insert(page, e);
                self.len += 1;
                e
            }
        };
        if write && entry.read_only {
            return Err(fault(mmu::FAULT_PAGE_READ_ONLY));
        }
        Ok(entry.page.offset(va & (vm::SMALL_PAGE_SIZE - 1)))
    }
}

fn pde_table(pde_half: u64, addr_shift: u32) -> Option<Option<PhysAddr>> {
    let aper = pde_half & vm::PDE_APER_MASK;
    let addr = ((pde_half >> addr_shift) & vm::PDE_ADDR_MASK) << 12;
    match aper {
        vm::PDE_APER_NONE => Some(None),
        vm::PDE_APER_VRAM => Some(Some(PhysAddr::vram(addr))),
        _ => Some(Some(PhysAddr::sys(addr))),
    }
}

/// Decodes a PTE; `Ok(None)` if not valid.
fn decode_pte(pte: u64) -> Result<Option<(PhysAddr, bool)>, u32> {
    if pte & vm::PTE_VALID == 0 {
        return Ok(None);
    }
    let field = (pte >> vm::PTE_ADDR_SHIFT) & vm::PTE_ADDR_MASK;
    let ro = pte & vm::PTE_READ_ONLY != 0;
    let pa = match (pte >> vm::PTE_APER_SHIFT) & vm::PTE_APER_MASK {
        // For VRAM only bits 28:4 are address; 31:29 are a peer index the model lacks.
        vm::PTE_APER_VRAM => PhysAddr::vram((field & vm::PTE_VRAM_ADDR_MASK) << 12),
        vm::PTE_APER_PEER => return Err(mmu::FAULT_BAD_PHYSICAL),
        _ => PhysAddr::sys(field << 12),
    };
    Ok(Some((pa, ro)))
}

fn walk(bus: &PhysBus, pdb: PhysAddr, big_shift: u32, va: u64) -> Result<TlbEntry, u32> {
    let pde_shift = big_shift + vm::PDE_SPAN_EXTRA_SHIFT;
    let pde_index = va >> pde_shift;
    let pde = bus
        .read64(pdb.offset(pde_index * vm::PDE_SIZE))
        .ok_or(mmu::FAULT_BAD_PHYSICAL)?;
    let size_shift = ((pde >> vm::PDE_SIZE_SHIFT) & vm::PDE_SIZE_MASK) as u32;
    let big_table =
        pde_table(pde & 0xffff_ffff, vm::PDE_BIG_ADDR_SHIFT).ok_or(mmu::FAULT_BAD_PHYSICAL)?;
    let small_table =
        pde_table(pde >> 32, vm::PDE_BIG_ADDR_SHIFT).ok_or(mmu::FAULT_BAD_PHYSICAL)?;
    if big_table.is_none() && small_table.is_none() {
        return Err(mmu::FAULT_PT_NOT_PRESENT);
    }
    let mut too_short = false;
    if let Some(spt) = small_table {
        let full = 1u64 << (pde_shift - vm::SMALL_PAGE_SHIFT);
        let index = (va >> vm::SMALL_PAGE_SHIFT) & (full - 1);
        if index < full >> size_shift {
            let pte = bus
                .read64(spt.offset(index * vm::PTE_SIZE))
                .ok_or(mmu::FAULT_BAD_PHYSICAL)?;
            if let Some((page, read_only)) = decode_pte(pte)? {
                return Ok(TlbEntry { page, read_only });
            }
        } else {
            too_short = true;
        }
    }
    if let Some(lpt) = big_table {
        let index = (va >> big_shift) & (vm::LPT_ENTRIES - 1);
        if index < vm::LPT_ENTRIES >> size_shift {
            let pte = bus
                .read64(lpt.offset(index * vm::PTE_SIZE))
                .ok_or(mmu::FAULT_BAD_PHYSICAL)?;
            if let Some((base, read_only)) = decode_pte(pte)? {
                let within = va & ((1u64 << big_shift) - 1) & !(vm::SMALL_PAGE_SIZE - 1);
                return Ok(TlbEntry {
                    page: base.offset(within),
                    read_only,
                });
            }
            too_short = false;
        } else {
            too_short = true;
        }
    }
    Err(if too_short {
        mmu::FAULT_PT_TOO_SHORT
    } else {
        mmu::FAULT_PAGE_NOT_PRESENT
    })
}
