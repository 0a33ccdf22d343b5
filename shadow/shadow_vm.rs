// SPDX-License-Identifier: GPL-2.0
//! Shadow page tables of one guest address space, kept in host VRAM and brought up to date
//! incrementally.
//!
//! GPUvm rebuilt all 8192 PDEs and every present table on each guest TLB flush. Here each PDE
//! remembers the guest PDE it was built from and, per page table, the range of entries that
//! may have changed since the last sync. A sync re-reads only those:
//! - with write tracking (`tracked`), the glue reports every trapped guest write to VRAM
//!   ([`ShadowVm::note_guest_write`]); a write into the PD marks that PDE, a write into a page
//!   table marks that entry. A TLB flush then only says "sync before the GPU next uses this".
//! - without it (e.g. the guest writes its tables through a remapped BAR3 window the mediator
//!   does not see), a TLB flush marks everything reachable; the sync still writes only the
//!   shadow entries whose value changes.
//!
//! The PD is read only up to the instance block's limit, never 8192 entries blindly.
//!
//! Per-PDE state lives in caller-provided storage (`S`, e.g. a `KVec` or `Vec` of
//! [`PdeShadow`]), whose length caps the address space: PDEs beyond it are not shadowed and
//! [`ShadowVm::limit`] (the limit to put in the shadow instance block) is cut to match.
//! Shadow tables come from a [`TableAlloc`] outside every partition: host VRAM, or host
//! system memory the GPU reaches by DMA ([`TableMemory`]), which the module uses.

use core::ops::DerefMut;

use crate::gf100::vm;
use crate::memory::{GuestVram, SysMem, Vram};
use crate::pagetable::{shadow_pte, table_to_host, Aperture, PageSize, Pde, TableRef, VmDesc, PDE_SPAN};
use crate::partition::Slice;

/// Where shadow tables come from (4 KiB aligned blocks) and where they live.
pub trait TableAlloc {
    /// A block of at least `bytes`, 4 KiB aligned; `None` when exhausted.
    fn alloc(&mut self, bytes: u64) -> Option<u64>;
    /// Gives back a block from [`TableAlloc::alloc`] with the same `bytes`.
    fn free(&mut self, addr: u64, bytes: u64);
    /// `None`: the blocks are host VRAM, written through the sync's `vram` (aperture VRAM).
    /// `Some`: they are host system memory the GPU reaches by DMA, addressed by bus address
    /// and written here (aperture SYS_COHERENT): a CPU store instead of a bus round trip per
    /// word, which is what most of a sync is (see [`TableMemory`]).
    fn memory(&mut self) -> Option<&mut dyn TableMemory> {
        None
    }
    /// A shadow instance block of `bytes`: always host VRAM (PFIFO loads channels from it,
    /// and the mediator writes it through `vram`), from the same quota as the tables.
    fn alloc_inst(&mut self, bytes: u64) -> Option<u64> {
        self.alloc(bytes)
    }
    /// Gives back a block from [`TableAlloc::alloc_inst`].
    fn free_inst(&mut self, addr: u64, bytes: u64) {
        self.free(addr, bytes)
    }
}

/// Host system memory holding shadow tables, by bus address (4-byte aligned words). The GPU
/// walks it snooped, so a store is visible to the walk that follows the host TLB flush.
///
/// **Choice** (see `uapi/gf100.rs` `vm::PDE_APER_SYS_COHERENT`): Fermi's PDEs and the
/// instance block's PDB name system-memory tables as well as VRAM ones; nouveau's GF100 VMM
/// (`nvkm/subdev/mmu/vmmgf100.c` `gf100_vmm_pgd_pde`) writes aperture 2 plus the table's VOL
/// bit for a table in host memory, and the shadow's tables are marked the same way. The GPU's
/// walks then cross the bus on a TLB miss, while every shadow update is a CPU store.
pub trait TableMemory {
    /// Reads the word at bus address `bus`.
    fn read32(&self, bus: u64) -> u32;
    /// Writes the word at bus address `bus`.
    fn write32(&mut self, bus: u64, v: u32);
}

/// Shadow-table memory for one operation: the allocator's own memory if it has one, else
/// host VRAM.
struct Tables<'a, V: Vram + ?Sized, A: TableAlloc + ?Sized> {
    vram: &'a mut V,
    alloc: &'a mut A,
}

impl<V: Vram + ?Sized, A: TableAlloc + ?Sized> Tables<'_, V, A> {
    fn read32(&mut self, at: u64) -> u32 {
        match self.alloc.memory() {
            Some(m) => m.read32(at),
            None => self.vram.read32(at),
        }
    }
    fn write32(&mut self, at: u64, v: u32) {
        match self.alloc.memory() {
            Some(m) => m.write32(at, v),
            None => self.vram.write32(at, v),
        }
    }
    fn read64(&mut self, at: u64) -> u64 {
        u64::from(self.read32(at)) | u64::from(self.read32(at.wrapping_add(4))) << 32
    }
    fn write64(&mut self, at: u64, v: u64) {
        self.write32(at, v as u32);
        self.write32(at.wrapping_add(4), (v >> 32) as u32);
    }
}

/// The aperture shadow tables from `alloc` live in.
fn table_aperture<A: TableAlloc + ?Sized>(alloc: &mut A) -> Aperture {
    if alloc.memory().is_some() {
        Aperture::SysCoherent
    } else {
        Aperture::Vram
    }
}

/// Entries of one shadow page table and the guest table it mirrors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableShadow {
    /// Guest VRAM address of the guest table (meaningful when `host != 0`).
    guest: u64,
    /// Host VRAM address of the shadow table; 0 = no table.
    host: u64,
    /// Reachable entries (both tables).
    entries: u32,
    /// Entries `[dirty_lo, dirty_hi)` must be re-read from the guest.
    dirty_lo: u32,
    dirty_hi: u32,
}

impl TableShadow {
    fn mark(&mut self, lo: u32, hi: u32) {
        if self.dirty_lo >= self.dirty_hi {
            self.dirty_lo = lo;
            self.dirty_hi = hi;
        } else {
            self.dirty_lo = self.dirty_lo.min(lo);
            self.dirty_hi = self.dirty_hi.max(hi);
        }
    }

    fn bytes(&self) -> u64 {
        table_bytes(u64::from(self.entries))
    }
}

fn table_bytes(entries: u64) -> u64 {
    (entries * vm::PTE_SIZE).next_multiple_of(vm::TABLE_ALIGN)
}

/// Shadow state of one PDE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PdeShadow {
    /// The guest PDE the shadow PDE was built from.
    guest: u64,
    /// The PDE must be re-read from the guest PD.
    dirty: bool,
    /// Big-page and small-page tables ([`PageSize::index`]).
    tables: [TableShadow; 2],
    /// Tables a sync replaced: the GPU may still walk them through a PDE it cached until the
    /// host TLB is flushed, so they go back to the pool only then ([`ShadowVm::reclaim`]).
    retired: [TableShadow; 2],
}

/// Counters for sysfs (`shadow_syncs`, `pte_writes`) and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Syncs that found something to do.
    pub syncs: u64,
    /// Guest entries (PDEs and PTEs) read.
    pub guest_reads: u64,
    /// Shadow entries written.
    pub shadow_writes: u64,
    /// Guest entries refused (out of partition, unpinnable, unsupported).
    pub refused: u64,
    /// Shadow tables that could not be allocated (their half of the PDE stays absent).
    pub alloc_failures: u64,
}

/// The shadow of one guest address space.
pub struct ShadowVm<S: DerefMut<Target = [PdeShadow]>> {
    desc: VmDesc,
    /// PDEs shadowed: the guest's reachable PDEs, cut to the storage.
    count: u32,
    pdes: S,
    pd_host: u64,
    pd_bytes: u64,
    /// Where the shadow PD and tables live (VRAM or SYS_COHERENT, from the allocator).
    aperture: Aperture,
    tracked: bool,
    /// Bumped by every guest TLB flush of this space; `synced` is the value at the last sync.
    flushes: u64,
    synced: u64,
    /// Everything reachable must be re-read (set by a flush without write tracking).
    all_dirty: bool,
    /// Statistics.
    pub stats: SyncStats,
}

impl<S: DerefMut<Target = [PdeShadow]>> ShadowVm<S> {
    /// A shadow for the guest address space `desc`, with its PD allocated and zeroed and
    /// everything marked for the first sync. `None` if the PD cannot be allocated.
    pub fn new<V: Vram + ?Sized, A: TableAlloc + ?Sized>(
        desc: VmDesc,
        mut pdes: S,
        tracked: bool,
        vram: &mut V,
        alloc: &mut A,
    ) -> Option<Self> {
        let cap = pdes.len().min(u32::MAX as usize) as u64;
        let count = desc.pde_count().min(cap) as u32;
        let pd_bytes = table_bytes(u64::from(count.max(1)));
        let pd_host = alloc.alloc(pd_bytes)?;
        let aperture = table_aperture(alloc);
        let mut mem = Tables { vram, alloc };
        for i in 0..u64::from(count) {
            mem.write64(pd_host + i * vm::PDE_SIZE, 0);
        }
        for p in pdes.iter_mut() {
            *p = PdeShadow { dirty: true, ..PdeShadow::default() };
        }
        Some(ShadowVm {
            desc,
            count,
            pdes,
            pd_host,
            pd_bytes,
            aperture,
            tracked,
            flushes: 1,
            synced: 0,
            all_dirty: true,
            stats: SyncStats::default(),
        })
    }

    /// The guest address space this shadows.
    pub fn desc(&self) -> VmDesc {
        self.desc
    }

    /// Host address of the shadow PD (for the shadow instance block and host flushes): a
    /// VRAM address, or a bus address if [`ShadowVm::pd_in_sysmem`].
    pub fn pd_host(&self) -> u64 {
        self.pd_host
    }

    /// Whether the shadow PD and tables are in host system memory (PDB target SYS_COHERENT).
    pub fn pd_in_sysmem(&self) -> bool {
        self.aperture != Aperture::Vram
    }

    /// What the shadow instance block names of this space: its PD (and where it lives) and
    /// its limit.
    pub fn inst_shadow(&self) -> crate::channel::InstShadow {
        crate::channel::InstShadow { pd_host: self.pd_host, pd_sys: self.pd_in_sysmem(), limit: self.limit() }
    }

    /// The limit for the shadow instance block: the guest's, cut to the PDEs shadowed.
    pub fn limit(&self) -> u64 {
        let shadowed = (u64::from(self.count) * PDE_SPAN).saturating_sub(1);
        self.desc.limit.min(shadowed)
    }

    /// Whether guest writes are reported (see the module comment).
    pub fn tracked(&self) -> bool {
        self.tracked
    }

    /// A guest TLB flush of this space: the shadow must be synced before the GPU uses it.
    pub fn flush(&mut self) {
        self.flushes = self.flushes.wrapping_add(1);
        if !self.tracked {
            self.all_dirty = true;
        }
    }

    /// Forget everything learned from write tracking and re-read all reachable entries at the
    /// next sync (e.g. after a system-memory range was unmapped and its pins dropped).
    pub fn invalidate_all(&mut self) {
        self.all_dirty = true;
        self.flushes = self.flushes.wrapping_add(1);
    }

    /// A flush happened since the last sync.
    pub fn needs_sync(&self) -> bool {
        self.flushes != self.synced
    }

    /// Records a trapped guest write of 4 bytes at guest VRAM address `pa`. Returns whether it
    /// touched this space's PD or one of its page tables.
    pub fn note_guest_write(&mut self, pa: u64) -> bool {
        let mut hit = false;
        let pd_end = self.desc.pd.saturating_add(u64::from(self.count) * vm::PDE_SIZE);
        if (self.desc.pd..pd_end).contains(&pa) {
            let i = ((pa - self.desc.pd) / vm::PDE_SIZE) as usize;
            if let Some(p) = self.pdes.get_mut(i) {
                p.dirty = true;
                hit = true;
            }
        }
        let count = self.count as usize;
        for p in self.pdes.iter_mut().take(count) {
            for t in p.tables.iter_mut().filter(|t| t.host != 0) {
                let end = t.guest + u64::from(t.entries) * vm::PTE_SIZE;
                if (t.guest..end).contains(&pa) {
                    let e = ((pa - t.guest) / vm::PTE_SIZE) as u32;
                    t.mark(e, e + 1);
                    hit = true;
                }
            }
        }
        hit
    }

    /// Records that guest VRAM `[pa, pa + len)` may have been written unseen (a page the guest
    /// had mapped straight through a BAR): every PD or page-table entry in it is re-read at the
    /// next sync. Returns whether it touched this space's PD or one of its page tables.
    pub fn note_guest_range(&mut self, pa: u64, len: u64) -> bool {
        let end = pa.saturating_add(len);
        let mut hit = false;
        let pd_end = self.desc.pd.saturating_add(u64::from(self.count) * vm::PDE_SIZE);
        let (lo, hi) = (pa.max(self.desc.pd), end.min(pd_end));
        if lo < hi {
            let first = ((lo - self.desc.pd) / vm::PDE_SIZE) as usize;
            let last = (hi - 1 - self.desc.pd) / vm::PDE_SIZE;
            for p in self.pdes.iter_mut().skip(first).take(last as usize + 1 - first) {
                p.dirty = true;
                hit = true;
            }
        }
        let count = self.count as usize;
        for p in self.pdes.iter_mut().take(count) {
            for t in p.tables.iter_mut().filter(|t| t.host != 0) {
                let t_end = t.guest + u64::from(t.entries) * vm::PTE_SIZE;
                let (lo, hi) = (pa.max(t.guest), end.min(t_end));
                if lo < hi {
                    let e0 = ((lo - t.guest) / vm::PTE_SIZE) as u32;
                    let e1 = ((hi - 1 - t.guest) / vm::PTE_SIZE) as u32 + 1;
                    t.mark(e0, e1);
                    hit = true;
                }
            }
        }
        hit
    }

    /// Brings the shadow tables up to date with the guest's. Guest tables are read through the
    /// partition view only; every entry written is in host terms (see `pagetable`).
    pub fn sync<V: Vram + ?Sized, Y: SysMem + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        vram: &mut V,
        slice: &Slice,
        sys: &mut Y,
        alloc: &mut A,
    ) {
        let all = self.all_dirty;
        let mut work = false;
        for i in 0..self.count as usize {
            let Some(mut p) = self.pdes.get(i).copied() else { break };
            if all {
                p.dirty = true;
                for t in p.tables.iter_mut() {
                    t.mark(0, t.entries);
                }
            }
            let mut publish = None;
            if p.dirty {
                work = true;
                publish = Some(self.sync_pde(i as u64, &mut p, vram, slice, alloc));
            }
            for size in PageSize::ALL {
                // A new table is filled before its PDE points at it; any other may be walked
                // by the GPU while it is written.
                let live = publish.is_none_or(|(_, fresh): (u64, u8)| fresh & (1 << size.index()) == 0);
                let t = &mut p.tables[size.index()];
                if t.host == 0 || t.dirty_lo >= t.dirty_hi {
                    continue;
                }
                work = true;
                for e in t.dirty_lo..t.dirty_hi.min(t.entries) {
                    let off = u64::from(e) * vm::PTE_SIZE;
                    let raw = GuestVram::new(&*vram, *slice).read_entry(t.guest + off, vm::PTE_VALID as u32).unwrap_or(0);
                    self.stats.guest_reads += 1;
                    let entry = shadow_pte(raw, size, slice, sys);
                    if raw & vm::PTE_VALID != 0 && entry == crate::pagetable::REFUSED_PTE {
                        self.stats.refused += 1;
                    }
                    // Tracked entries are dirty because the guest wrote them: write without
                    // reading the shadow back (a read is a round trip, a write is posted).
                    // Untracked syncs re-read everything: write only what changed.
                    let mut mem = Tables { vram: &mut *vram, alloc: &mut *alloc };
                    if self.tracked || mem.read64(t.host + off) != entry {
                        if live {
                            write_live_entry(&mut mem, t.host + off, entry);
                        } else {
                            mem.write64(t.host + off, entry);
                        }
                        self.stats.shadow_writes += 1;
                    }
                }
                t.dirty_lo = 0;
                t.dirty_hi = 0;
            }
            if let Some((entry, _)) = publish {
                self.publish_pde(i as u64, entry, &mut Tables { vram: &mut *vram, alloc: &mut *alloc });
            }
            if let Some(slot) = self.pdes.get_mut(i) {
                *slot = p;
            }
        }
        if work {
            self.stats.syncs += 1;
        }
        self.all_dirty = false;
        self.synced = self.flushes;
    }

    /// Re-reads guest PDE `i` and rebuilds its tables' placement: a table whose guest address
    /// or size changed gets a fresh shadow table, fully marked, and the old one is retired.
    /// Returns the shadow PDE to publish once the fresh tables are filled, and which tables
    /// are fresh (bit [`PageSize::index`]).
    fn sync_pde<V: Vram + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        i: u64,
        p: &mut PdeShadow,
        vram: &mut V,
        slice: &Slice,
        alloc: &mut A,
    ) -> (u64, u8) {
        let mut fresh = 0;
        let raw = GuestVram::new(&*vram, *slice).read64(self.desc.pd + i * vm::PDE_SIZE).unwrap_or(0);
        self.stats.guest_reads += 1;
        p.dirty = false;
        p.guest = raw;
        let pde = Pde::decode(raw);
        let mut shadow = Pde { big: None, small: None, size_shift: pde.size_shift };
        for size in PageSize::ALL {
            let t = &mut p.tables[size.index()];
            let entries = self.desc.reachable(i, size, pde.size_shift);
            // Only VRAM tables wholly inside the partition are shadowed; a table in system
            // memory or outside leaves this half absent.
            let want = pde
                .table(size)
                .filter(|g| entries > 0 && table_to_host(g, entries, slice).is_some())
                .map(|g| g.addr);
            if pde.table(size).is_some() && want.is_none() {
                self.stats.refused += 1;
            }
            let same = want == Some(t.guest) && t.host != 0 && u64::from(t.entries) == entries;
            if !same {
                if t.host != 0 {
                    let r = &mut p.retired[size.index()];
                    // Only a caller that syncs twice without `reclaim` (a test) finds one
                    // here; the mediator reclaims after the flush that follows every sync.
                    if r.host != 0 {
                        alloc.free(r.host, r.bytes());
                    }
                    *r = *t;
                }
                *t = TableShadow::default();
                if let Some(g) = want {
                    match alloc.alloc(table_bytes(entries)) {
                        Some(host) => {
                            *t = TableShadow { guest: g, host, entries: entries as u32, dirty_lo: 0, dirty_hi: 0 };
                            t.mark(0, entries as u32);
                            fresh |= 1 << size.index();
                        }
                        None => {
                            self.stats.alloc_failures += 1;
                            // Retried at the next sync, when the retired table may be back.
                            p.dirty = true;
                        }
                    }
                }
            }
            if t.host != 0 {
                // A table in system memory is walked VOL (uncached), as nouveau's
                // gf100_vmm_pgd_pde marks every host-memory table: the CPU's stores to it
                // are then what the next walk after a TLB flush sees.
                let vol = pde.table(size).is_some_and(|g| g.vol) || self.aperture != Aperture::Vram;
                let r = TableRef { addr: t.host, aperture: self.aperture, vol };
                match size {
                    PageSize::Big => shadow.big = Some(r),
                    PageSize::Small => shadow.small = Some(r),
                }
            }
        }
        (shadow.encode(), fresh)
    }

    /// Writes shadow PDE `i`, which the GPU may walk meanwhile. Each half is one word, but the
    /// SIZE field in the low word sizes both tables: when it changes, the small-page half is
    /// taken away first, so no walk pairs a table with a size it was not allocated for.
    fn publish_pde<V: Vram + ?Sized, A: TableAlloc + ?Sized>(&mut self, i: u64, entry: u64, vram: &mut Tables<'_, V, A>) {
        let at = self.pd_host + i * vm::PDE_SIZE;
        let old = vram.read64(at);
        if old == entry {
            return;
        }
        let size = vm::PDE_SIZE_MASK << vm::PDE_SIZE_SHIFT;
        if (old ^ entry) & size != 0 && old >> 32 != 0 {
            vram.write32(at + 4, 0);
        }
        vram.write32(at, entry as u32);
        vram.write32(at + 4, (entry >> 32) as u32);
        self.stats.shadow_writes += 1;
    }

    /// Frees the tables syncs replaced. Call after the host TLB flush that follows a sync.
    pub fn reclaim<A: TableAlloc + ?Sized>(&mut self, alloc: &mut A) {
        for p in self.pdes.iter_mut().take(self.count as usize) {
            for t in p.retired.iter_mut().filter(|t| t.host != 0) {
                alloc.free(t.host, t.bytes());
                *t = TableShadow::default();
            }
        }
    }

    /// Gives every shadow table and the PD back; the shadow must no longer be bound.
    pub fn release<A: TableAlloc + ?Sized>(mut self, alloc: &mut A) -> S {
        for p in self.pdes.iter_mut() {
            for t in p.tables.iter_mut().chain(p.retired.iter_mut()) {
                if t.host != 0 {
                    alloc.free(t.host, t.bytes());
                    *t = TableShadow::default();
                }
            }
        }
        alloc.free(self.pd_host, self.pd_bytes);
        self.pdes
    }
}

/// Replaces shadow entry `at`, which the GPU may be walking, in 32-bit writes: the address is
/// in the low word and the aperture in the high word, so the entry is not VALID while the high
/// word changes, and no walk pairs one entry's address with the other's aperture.
fn write_live_entry<V: Vram + ?Sized, A: TableAlloc + ?Sized>(vram: &mut Tables<'_, V, A>, at: u64, entry: u64) {
    let (lo, hi) = (entry as u32, (entry >> 32) as u32);
    let valid = vm::PTE_VALID as u32;
    vram.write32(at, lo & !valid);
    vram.write32(at + 4, hi);
    if lo & valid != 0 {
        vram.write32(at, lo);
    }
}
