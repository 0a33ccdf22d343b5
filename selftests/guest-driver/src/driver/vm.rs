//! GF100 virtual memory from the driver side: page directories and page tables in VRAM,
//! written through the PRAMIN window (only for the BAR3 VM at bring-up) or through BAR3, and
//! the TLB flush after every batch of changes (nouveau's order: PTEs, BAR flush, invalidate).

use super::hw::{fail, Hw, Result};
use crate::alloc::RangeAlloc;
use crate::transport::Bar;
use gpuvm_uapi::gf100::{mmu, target, vm};
use std::collections::BTreeMap;

/// Big pages are 128 KiB (MMU CTRL bit 0 = 0, nouveau's GF100 choice).
pub const BIG_SHIFT: u32 = vm::BIG_PAGE_SHIFT_128K;
pub const BIG_PAGE: u64 = 1 << BIG_SHIFT;
pub const SMALL_PAGE: u64 = vm::SMALL_PAGE_SIZE;
/// Bytes of VA one PDE covers (128 MiB).
pub const PDE_SPAN: u64 = 1 << (BIG_SHIFT + vm::PDE_SPAN_EXTRA_SHIFT);
const SPT_BYTES: u64 = vm::SPT_ENTRIES_128K * vm::PTE_SIZE;
const LPT_BYTES: u64 = vm::LPT_ENTRIES * vm::PTE_SIZE;

/// The VRAM region holding instance blocks, page tables and runlists ("instmem"). It is mapped
/// linearly at BAR3 VA 0, so a structure at VRAM address `a` is at BAR3 offset `a - base`.
pub struct Pool {
    pub base: u64,
    pub size: u64,
    alloc: RangeAlloc,
}

impl Pool {
    pub fn new(base: u64, size: u64) -> Self {
        Pool { base, size, alloc: RangeAlloc::new(base, base + size) }
    }
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<u64> {
        match self.alloc.alloc(size, align) {
            Some(a) => Ok(a),
            None => fail(format!("instmem pool exhausted ({size:#x} bytes wanted)")),
        }
    }
    pub fn free(&mut self, addr: u64, size: u64) {
        self.alloc.free(addr, size)
    }
    pub fn bar3(&self, addr: u64) -> u64 {
        debug_assert!(addr >= self.base && addr < self.base + self.size);
        addr - self.base
    }
}

/// How a VM's tables are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Through the PRAMIN window (bring-up of the BAR3 VM itself).
    Pramin,
    /// Through BAR3 (the pool is mapped there).
    Bar3,
}

/// Write 32-bit words at VRAM address `addr` (in the pool when `via` is Bar3).
pub fn write_words(hw: &mut Hw, pool: &Pool, via: Access, addr: u64, words: &[u32]) {
    match via {
        Access::Pramin => {
            for (i, w) in words.iter().enumerate() {
                hw.pramin_wr32(addr + 4 * i as u64, *w);
            }
        }
        Access::Bar3 => {
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            hw.bar_write_block(Bar::Bar3, pool.bar3(addr), &bytes);
        }
    }
}

/// Zero `len` bytes of pool memory.
pub fn zero(hw: &mut Hw, pool: &Pool, via: Access, addr: u64, len: u64) {
    write_words(hw, pool, via, addr, &vec![0u32; (len / 4) as usize]);
}

fn split64(v: u64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

#[derive(Default, Clone, Copy)]
struct PdeTables {
    lpt: Option<u64>,
    spt: Option<u64>,
}

/// Where a mapping's pages come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Aper {
    Vram,
    Sys,
}

pub struct Vm {
    pub pd: u64,
    pd_bytes: u64,
    /// VA space size (the instance block's limit is `limit - 1`).
    pub limit: u64,
    via: Access,
    /// BAR VMs are flushed with HUB_ONLY.
    hub: bool,
    tables: BTreeMap<u64, PdeTables>,
    /// VA for big-page mappings (and for everything when there is no small region).
    va: RangeAlloc,
    /// VA for 4 KiB mappings: the top of the space, cut short by the limit so that the one
    /// small-page table there has few reachable entries (fewer entries to zero).
    small_va: Option<RangeAlloc>,
    dirty: bool,
    /// Page-table entries written since creation (for the record).
    pub pte_writes: u64,
}

impl Vm {
    /// A VM of `limit` bytes whose PD is sized to the limit, placed in the pool and zeroed. VA
    /// allocation starts at `va_start`; the top `small_region` bytes (0 = none) are reserved
    /// for 4 KiB-page mappings.
    pub fn new(hw: &mut Hw, pool: &mut Pool, via: Access, limit: u64, va_start: u64, small_region: u64, hub: bool) -> Result<Vm> {
        let pdes = limit.div_ceil(PDE_SPAN);
        let pd_bytes = (pdes * vm::PDE_SIZE).next_multiple_of(vm::TABLE_ALIGN);
        let pd = pool.alloc(pd_bytes, vm::TABLE_ALIGN)?;
        zero(hw, pool, via, pd, pd_bytes);
        Ok(Vm {
            pd,
            pd_bytes,
            limit,
            via,
            hub,
            tables: BTreeMap::new(),
            va: RangeAlloc::new(va_start, limit - small_region),
            small_va: (small_region > 0).then(|| RangeAlloc::new(limit - small_region, limit)),
            dirty: true,
            pte_writes: 0,
        })
    }

    /// Allocate VA for a mapping of `size` bytes with `big` or small pages.
    pub fn alloc_va(&mut self, size: u64, big: bool) -> Option<u64> {
        match (&mut self.small_va, big) {
            (Some(s), false) => s.alloc(size, SMALL_PAGE),
            _ => self.va.alloc(size, if big { BIG_PAGE } else { SMALL_PAGE }),
        }
    }

    pub fn free_va(&mut self, va: u64, size: u64, big: bool) {
        match (&mut self.small_va, big) {
            (Some(s), false) => s.free(va, size),
            _ => self.va.free(va, size),
        }
    }

    /// Write this VM's PDB and limit into an instance block.
    pub fn bind_inst(&self, hw: &mut Hw, pool: &Pool, via: Access, inst: u64) {
        use gpuvm_uapi::gf100::inst as ri;
        let pdb_lo = (self.pd as u32 & ri::PDB_ADDR_MASK) | target::VRAM;
        let lim = self.limit - 1;
        write_words(hw, pool, via, inst + ri::PDB_LO as u64, &[pdb_lo, (self.pd >> 32) as u32, lim as u32, (lim >> 32) as u32]);
    }

    /// Entries of a table at `pde` the MMU can reach (those below the VM limit).
    fn reachable(&self, pde: u64, big: bool) -> u64 {
        let shift = if big { BIG_SHIFT } else { vm::SMALL_PAGE_SHIFT };
        let span = (self.limit - pde * PDE_SPAN).min(PDE_SPAN);
        span.div_ceil(1 << shift)
    }

    /// The table for `pde`, allocated and linked into the PD on first use. A new table is
    /// zeroed over its reachable entries unless the caller overwrites all of them (`full`).
    fn tables_for(&mut self, hw: &mut Hw, pool: &mut Pool, pde: u64, big: bool, full: bool) -> Result<u64> {
        let reach = self.reachable(pde, big) * vm::PTE_SIZE;
        let mut t = self.tables.get(&pde).copied().unwrap_or_default();
        let (slot, bytes) = if big { (&mut t.lpt, LPT_BYTES) } else { (&mut t.spt, SPT_BYTES) };
        if let Some(a) = *slot {
            return Ok(a);
        }
        let a = pool.alloc(bytes, vm::TABLE_ALIGN)?;
        if !full {
            zero(hw, pool, self.via, a, reach);
        }
        *slot = Some(a);
        self.tables.insert(pde, t);
        let lpt_aper = if t.lpt.is_some() { vm::PDE_APER_VRAM } else { vm::PDE_APER_NONE };
        let spt_aper = if t.spt.is_some() { vm::PDE_APER_VRAM } else { vm::PDE_APER_NONE };
        let v = vm::pde(t.lpt.unwrap_or(0), lpt_aper, t.spt.unwrap_or(0), spt_aper);
        write_words(hw, pool, self.via, self.pd + pde * vm::PDE_SIZE, &split64(v));
        self.dirty = true;
        Ok(a)
    }

    /// Map `pages` (one physical address per page of `1 << shift` bytes) at `va`.
    /// `big` selects 128 KiB pages (VRAM only); otherwise 4 KiB pages.
    pub fn map(&mut self, hw: &mut Hw, pool: &mut Pool, va: u64, pages: &[u64], aper: Aper, big: bool) -> Result<()> {
        let psize = if big { BIG_PAGE } else { SMALL_PAGE };
        assert!(va % psize == 0 && va + pages.len() as u64 * psize <= self.limit);
        let pte_aper = match aper {
            Aper::Vram => vm::PTE_APER_VRAM,
            Aper::Sys => vm::PTE_APER_SYS_COHERENT,
        };
        let ptes: Vec<u64> = pages.iter().map(|&p| vm::pte(p, pte_aper, false, vm::KIND_PITCH)).collect();
        self.write_ptes(hw, pool, va, &ptes, big)
    }

    pub fn unmap(&mut self, hw: &mut Hw, pool: &mut Pool, va: u64, npages: usize, big: bool) -> Result<()> {
        self.write_ptes(hw, pool, va, &vec![0u64; npages], big)
    }

    /// Write consecutive PTEs starting at `va`, one block write per table touched.
    /// Test hook: the small-page PTE at `va` set to the raw value `pte` (not flushed).
    pub fn raw_pte(&mut self, hw: &mut Hw, pool: &mut Pool, va: u64, pte: u64) -> Result<()> {
        self.write_ptes(hw, pool, va, &[pte], false)
    }

    fn write_ptes(&mut self, hw: &mut Hw, pool: &mut Pool, va: u64, ptes: &[u64], big: bool) -> Result<()> {
        let shift = if big { BIG_SHIFT } else { vm::SMALL_PAGE_SHIFT };
        let per_table = PDE_SPAN >> shift;
        let mut done = 0usize;
        while done < ptes.len() {
            let page = (va >> shift) + done as u64;
            let pde = page / per_table;
            let idx = page % per_table;
            let n = ((per_table - idx) as usize).min(ptes.len() - done);
            let full = idx == 0 && n as u64 >= self.reachable(pde, big);
            let table = self.tables_for(hw, pool, pde, big, full)?;
            let words: Vec<u32> = ptes[done..done + n].iter().flat_map(|p| split64(*p)).collect();
            write_words(hw, pool, self.via, table + idx * vm::PTE_SIZE, &words);
            self.pte_writes += n as u64;
            done += n;
        }
        self.dirty = true;
        Ok(())
    }

    /// After page-table changes: flush BAR writes, then invalidate this PD's TLB entries.
    pub fn flush(&mut self, hw: &mut Hw) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        hw.bar_flush()?;
        hw.wait(mmu::CTRL, "TLB flush slot", |v| v & mmu::CTRL_FLUSH_SLOTS_MASK != 0)?;
        hw.wr(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(self.pd).with_sysram(false).raw());
        let flush = mmu::Invalidate::default().with_page_all(true).with_hub_only(self.hub).with_trigger(true);
        hw.wr(mmu::Invalidate::OFFSET, flush.raw());
        hw.wait(mmu::CTRL, "TLB flush done", |v| v & mmu::CTRL_FLUSH_DONE != 0)?;
        self.dirty = false;
        Ok(())
    }

    /// Give back every table and the PD to the pool.
    pub fn destroy(self, pool: &mut Pool) {
        for t in self.tables.values() {
            if let Some(a) = t.lpt {
                pool.free(a, LPT_BYTES);
            }
            if let Some(a) = t.spt {
                pool.free(a, SPT_BYTES);
            }
        }
        pool.free(self.pd, self.pd_bytes);
    }
}
