//! The whole mediator fuzzed with arbitrary guest input, against a host stand-in that records
//! and checks every host-side effect at the moment it happens.
//!
//! A case is two vGPUs sharing one host pool: A, the attacker, brought up like a guest driver
//! (or not) and then driven by a random sequence of BAR0 writes and reads (weighted towards
//! the registers that carry addresses and channel ids), PRAMIN, BAR1 and BAR3 accesses, writes
//! its own engines make to its VRAM behind the mediator's back, DMA unmaps and maps, resets,
//! closes, host interrupts, sync-mode changes and host failures; and B, the victim, whose
//! channel runs throughout and which now and then binds, flushes and rebuilds shadows too, so
//! that pool blocks pass between the two.
//!
//! Checked when they happen (the GPU may look at any moment, so every single host write is
//! checked, not just the state at the end of a call):
//! 1. host VRAM is written only inside the writer's partition (guest data) or inside a pool
//!    block allocated to the writer and not freed; it is read only there too, and a guest
//!    read reaches nothing but the partition;
//! 2. every shadow PDE and PTE the GPU can reach (from a bound host channel) points at a live
//!    pool table of the same vGPU that holds every entry the limit and SIZE make reachable,
//!    inside the partition (VRAM), at a pinned guest page (system memory), or is not VALID;
//!    a block is never freed, nor a guest page unpinned, while a reachable shadow points at
//!    it or before the host TLB flush of a PD in use that reached it (a PD no channel uses
//!    gets a channel again only after that flush); nothing stays pinned in a range after
//!    its unmap;
//! 3. every host channel id the mediator names belongs to its slice; a doorbell, RUNNABLE or
//!    runlist entry only names a bound channel; none is runnable or listed while the guest
//!    has PFIFO, its PMC bit or bus mastering off;
//! 4. a shadow instance block is complete before it is bound (and while its channel may run):
//!    physical-copy gate closed, USERD page inside the partition, PDB at the vGPU's own shadow
//!    PD large enough for the limit, engine contexts virtual, every other word 0;
//! 5. the pool blocks a vGPU holds are what it accounts (`pool_used`) and within its quota;
//!    frees match allocations; after a reset nothing is held, after a close nothing pinned;
//! 6. no panic, and each step does a bounded number of host accesses (an unbounded loop
//!    would exceed it);
//! 7. sentinel words in the other partition, a neighbour's and the host's own area never
//!    change;
//! 8. host interrupt events naming only other channels change nothing the guest can read, and
//!    a guest that wrote its VRAM or had a channel bound is marked for scrubbing at reset or
//!    close.
//!
//! `make test` runs a short case count; set `GPUVM_FUZZ_CASES` for a long run (README).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use common::{fuzz_cases, FakeClock, MIB};
use gpuvm_shadow_tests::channel::{RunlistPart, RAMFC_COPIED};
use gpuvm_shadow_tests::gf100::{inst, mmu, pbus, pci, pfifo, pgraph, pmc, ramfc, target, userd, vm};
use gpuvm_shadow_tests::host_gpu::{HostError, HostEvents, HostFault, PbdmaError, PgraphError};
use gpuvm_shadow_tests::mediator::{Env, GuestMemory, HostChannels, Mediator};
use gpuvm_shadow_tests::memory::{SysMem, Vram};
use gpuvm_shadow_tests::partition::Slice;
use gpuvm_shadow_tests::regs::TABLE;
use gpuvm_shadow_tests::shadow_vm::TableAlloc;
use gpuvm_shadow_tests::sync_policy::SyncMode;
use gpuvm_shadow_tests::vregs::Bar;
use gpuvm_shadow_tests::HostStorage;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

// ---- host layout ------------------------------------------------------------------------

/// The host pool (shadow tables and instance blocks of both vGPUs).
const POOL_BASE: u64 = MIB;
const POOL_SIZE: u64 = 3 * MIB;
/// Each vGPU's partition.
const PART: u64 = 4 * MIB;
/// Guest IOVA i is host bus address `SYS_HOST + i`.
const SYS_HOST: u64 = 0x40_0000_0000;
/// IOVAs the user has mapped at the start; maps and unmaps move within twice that.
const SYS_MAPPED: u64 = 16 * MIB;
const SYS_SPAN: u64 = 2 * SYS_MAPPED;
const PAGE: u64 = 0x1000;
const A: usize = 0;
const B: usize = 1;
/// The victim's pool quota; the attacker's is drawn per case.
const B_QUOTA: u64 = 256 << 10;

/// Where the partitions sit: low, or straddling 4 GiB (pointer high words matter).
fn slices(straddle: bool) -> [Slice; 2] {
    let base = if straddle { (4 << 30) - 2 * MIB } else { 64 * MIB };
    [
        Slice { first_unit: 1, units: 1, vram_base: base, vram_size: PART, first_channel: 8, channels: 8 },
        Slice { first_unit: 2, units: 1, vram_base: base + PART, vram_size: PART, first_channel: 16, channels: 8 },
    ]
}

// ---- guest layout (guest VRAM addresses, the same in both vGPUs) -------------------------

const INST: [u64; 4] = [0x1_0000, 0x1_1000, 0x1_2000, 0x1_3000];
const PD: [u64; 2] = [0x2_0000, 0x2_1000];
const RUNLIST: u64 = 0x3_0000;
const USERD: u64 = 0x4_0000;
const BPT: [u64; 2] = [0x8_0000, 0x8_2000];
const SPT: [u64; 2] = [0x10_0000, 0x14_0000];
const DATA: u64 = 0x20_0000;
const SLOTS: [u64; 14] =
    [INST[0], INST[1], INST[2], INST[3], PD[0], PD[1], RUNLIST, USERD, BPT[0], BPT[1], SPT[0], SPT[1], DATA, DATA + 0x2_0000];
/// Limits of the channel VM a bring-up builds: 16 MiB (its shadow fits the smaller quota),
/// 64 MiB (SIZE shrinks its small-page table), two whole PDEs (beyond any quota here).
const CHAN_LIMITS: [u64; 3] = [16 * MIB - 1, 64 * MIB - 1, (2 << PDE_SHIFT) - 1];
const BAR_LIMIT: u64 = 16 * MIB - 1;

// ---- hardware formats, decoded independently of shadow/ ---------------------------------

const PDE_SHIFT: u32 = 27;

fn page_shift(big: bool) -> u32 {
    if big {
        17
    } else {
        12
    }
}

/// Entries of PDE `i`'s table of one page size the MMU reaches under `limit` and SIZE.
fn reachable(limit: u64, i: u64, big: bool, size_shift: u32) -> u64 {
    let start = i << PDE_SHIFT;
    if start > limit {
        return 0;
    }
    let full = 1u64 << (PDE_SHIFT - page_shift(big));
    (((limit - start) >> page_shift(big)) + 1).min(full >> size_shift)
}

/// A PDE half: (aperture, table address).
fn pde_half(word: u32) -> (u32, u64) {
    (word & 3, u64::from(word >> 4) << 12)
}

fn tgt_name(t: u32) -> &'static str {
    ["vram", "?1", "sys", "sys-nc"][(t & 3) as usize]
}

// ---- the recording host -----------------------------------------------------------------

/// A structure of one vGPU the GPU can reach from a bound host channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Inst,
    /// A shadow PD read up to `count` entries under `limit`.
    Pd { limit: u64, count: u64 },
    /// A shadow page table of PD `pd` with `entries` reachable entries.
    Table { pd: u64, big: bool, entries: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Reached {
    owner: usize,
    role: Role,
}

impl Reached {
    fn len(&self) -> u64 {
        match self.role {
            Role::Inst => inst::SIZE,
            Role::Pd { count, .. } => count * 8,
            Role::Table { entries, .. } => entries * 8,
        }
    }
}

/// A table checked clean at write generation `gen` and pin epoch `epoch`, with the guest
/// pages its system-memory entries point at.
struct Checked {
    gen: u64,
    epoch: u64,
    sys: Vec<u64>,
}

struct Tenant {
    slice: Slice,
    quota: u64,
    has_sys: bool,
    /// Host channel -> shadow instance block.
    bound: BTreeMap<u32, u64>,
    runnable: BTreeSet<u32>,
    /// Guest channels of the last runlist part committed.
    listed: u128,
    mapped: BTreeSet<u64>,
    pinned: BTreeSet<u64>,
    errors: u32,
    reports: u32,
}

impl Tenant {
    fn new(slice: Slice, quota: u64, has_sys: bool) -> Self {
        let mapped = if has_sys { (0..SYS_MAPPED / PAGE).collect() } else { BTreeSet::new() };
        Tenant {
            slice,
            quota,
            has_sys,
            bound: BTreeMap::new(),
            runnable: BTreeSet::new(),
            listed: 0,
            mapped,
            pinned: BTreeSet::new(),
            errors: 0,
            reports: 0,
        }
    }

    fn in_part(&self, host: u64, len: u64) -> bool {
        host >= self.slice.vram_base && host.checked_add(len).is_some_and(|e| e <= self.slice.vram_base + PART)
    }

    fn host_chid_ok(&self, h: u32) -> bool {
        self.slice.channel_from_host(h).is_some()
    }
}

/// Host VRAM: the pool and both partitions dense, anything else sparse.
struct Mem {
    pool: Vec<u32>,
    parts: [(u64, Vec<u32>); 2],
    other: BTreeMap<u64, u32>,
}

impl Mem {
    fn new(s: &[Slice; 2]) -> Self {
        let words = (PART / 4) as usize;
        Mem {
            pool: vec![0; (POOL_SIZE / 4) as usize],
            parts: [(s[0].vram_base, vec![0; words]), (s[1].vram_base, vec![0; words])],
            other: BTreeMap::new(),
        }
    }
    fn slot(&mut self, pa: u64) -> Option<&mut u32> {
        if (POOL_BASE..POOL_BASE + POOL_SIZE).contains(&pa) {
            return self.pool.get_mut(((pa - POOL_BASE) / 4) as usize);
        }
        for (base, words) in self.parts.iter_mut() {
            if (*base..*base + PART).contains(&pa) {
                return words.get_mut(((pa - *base) / 4) as usize);
            }
        }
        None
    }
    fn get(&self, pa: u64) -> u32 {
        let pa = pa & !3;
        if (POOL_BASE..POOL_BASE + POOL_SIZE).contains(&pa) {
            return self.pool[((pa - POOL_BASE) / 4) as usize];
        }
        for (base, words) in &self.parts {
            if (*base..*base + PART).contains(&pa) {
                return words[((pa - *base) / 4) as usize];
            }
        }
        *self.other.get(&pa).unwrap_or(&0)
    }
    fn get64(&self, pa: u64) -> u64 {
        u64::from(self.get(pa)) | u64::from(self.get(pa + 4)) << 32
    }
    fn set(&mut self, pa: u64, v: u32) {
        let pa = pa & !3;
        match self.slot(pa) {
            Some(w) => *w = v,
            None => {
                self.other.insert(pa, v);
            }
        }
    }
}

/// Everything the two mediators reach, and what they did to it.
struct World {
    mem: Mem,
    t: [Tenant; 2],
    /// Live pool blocks: address -> (bytes, owner).
    live: BTreeMap<u64, (u64, usize)>,
    free: BTreeMap<u64, u64>,
    /// Write generation, and the generation of each block's last write.
    wgen: u64,
    block_gen: BTreeMap<u64, u64>,
    /// Bumped by every unpin (a checked table may point at a page no longer pinned).
    epoch: u64,
    checked: BTreeMap<(u64, bool, u64), Checked>,
    /// What the GPU can reach now (recomputed when `None`).
    reach: Option<BTreeMap<u64, Reached>>,
    /// Per shadow PD: blocks the GPU reached through it, and guest pages its shadows
    /// pointed at, since its last host TLB flush (the TLB may still hold them).
    pending: BTreeMap<u64, BTreeSet<u64>>,
    pending_sys: BTreeMap<u64, (usize, BTreeSet<u64>)>,
    /// Per shadow PD no channel uses: blocks freed and guest pages unpinned that its TLB may
    /// still hold. A channel may only be bound to it again after a host TLB flush.
    stale: BTreeMap<u64, BTreeSet<u64>>,
    alloc_fail: bool,
    kick_fail: bool,
    runlist_fail: bool,
    flush_fail: bool,
    mode: SyncMode,
    violations: Vec<String>,
    /// Host accesses in this step, the most in any step, and the bound.
    ops: u64,
    budget: u64,
    /// This step is a guest read: it may read nothing but the partition.
    guest_read: bool,
    /// Writes into the acting vGPU's partition this step.
    part_writes: Vec<(u64, u32)>,
    /// What the case exercised (summed over a run, see `Coverage`).
    seen: Coverage,
}

/// What a run exercised, so that a passing run can be told from one that never got deep.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    cases: u64,
    steps: u64,
    /// Most host accesses one step made.
    max_step: u64,
    binds: u64,
    /// Writes into shadow structures the GPU could reach, each checked as it happened.
    live_writes: u64,
    flushes: u64,
    frees: u64,
    unpins: u64,
    doorbells: u64,
    shadow_writes: u64,
}

impl Coverage {
    fn add(&mut self, o: &Coverage) {
        self.cases += o.cases;
        self.steps += o.steps;
        self.max_step = self.max_step.max(o.max_step);
        self.binds += o.binds;
        self.live_writes += o.live_writes;
        self.flushes += o.flushes;
        self.frees += o.frees;
        self.unpins += o.unpins;
        self.doorbells += o.doorbells;
        self.shadow_writes += o.shadow_writes;
    }
}

impl World {
    fn new(s: [Slice; 2], quota: u64) -> Self {
        let mut free = BTreeMap::new();
        free.insert(POOL_BASE, POOL_SIZE);
        World {
            mem: Mem::new(&s),
            t: [Tenant::new(s[0], quota, true), Tenant::new(s[1], B_QUOTA, false)],
            live: BTreeMap::new(),
            free,
            wgen: 0,
            block_gen: BTreeMap::new(),
            epoch: 0,
            checked: BTreeMap::new(),
            reach: None,
            pending: BTreeMap::new(),
            pending_sys: BTreeMap::new(),
            stale: BTreeMap::new(),
            alloc_fail: false,
            kick_fail: false,
            runlist_fail: false,
            flush_fail: false,
            mode: SyncMode::Lazy,
            violations: Vec::new(),
            ops: 0,
            budget: u64::MAX,
            guest_read: false,
            part_writes: Vec::new(),
            seen: Coverage::default(),
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 16 {
            self.violations.push(what);
        }
    }

    /// Counts a host access; a step that never ends would exceed the budget.
    fn tick(&mut self) {
        self.ops += 1;
        assert!(self.ops <= self.budget, "step budget of {} host accesses exceeded: an unbounded loop?", self.budget);
    }

    /// The live block holding `[pa, pa + len)`, if `who` owns it.
    fn owned_block(&self, who: usize, pa: u64, len: u64) -> Option<(u64, u64)> {
        let (&a, &(bytes, owner)) = self.live.range(..=pa).next_back()?;
        (owner == who && pa.checked_add(len).is_some_and(|e| e <= a + bytes)).then_some((a, bytes))
    }

    fn in_pool(pa: u64) -> bool {
        (POOL_BASE..POOL_BASE + POOL_SIZE).contains(&pa)
    }

    fn held(&self, who: usize) -> u64 {
        self.live.values().filter(|(_, o)| *o == who).map(|(b, _)| b).sum()
    }

    // ---- what the GPU can reach

    fn reach(&mut self) -> BTreeMap<u64, Reached> {
        self.ensure_reach();
        self.reach.clone().unwrap_or_default()
    }

    fn ensure_reach(&mut self) {
        if self.reach.is_some() {
            return;
        }
        let mut r = BTreeMap::new();
        for who in [A, B] {
            let bound: Vec<u64> = self.t[who].bound.values().copied().collect();
            for i in bound {
                if let Some(x) = r.insert(i, Reached { owner: who, role: Role::Inst }) {
                    self.violation(format!("shadow instance block {i:#x} of vGPU {who} is also reachable as {x:?}"));
                }
                let (pd, limit) = self.inst_vm(i);
                match r.get(&pd) {
                    // Channels of one address space share its PD.
                    Some(Reached { role: Role::Pd { .. }, .. }) => continue,
                    Some(x) => {
                        let m = format!("shadow PD {pd:#x} of vGPU {who} is also reachable as {x:?}");
                        self.violation(m);
                        continue;
                    }
                    None => {}
                }
                // Read no further than the block (the instance check reports a short PD).
                let cap = self.owned_block(who, pd, 8).map_or(0, |(a, bytes)| (a + bytes - pd) / 8);
                let count = ((limit >> PDE_SHIFT) + 1).min(cap);
                r.insert(pd, Reached { owner: who, role: Role::Pd { limit, count } });
                for e in 0..count {
                    for (at, big, entries) in self.pde_tables(pd, limit, e) {
                        if let Some(x) = r.insert(at, Reached { owner: who, role: Role::Table { pd, big, entries } }) {
                            self.violation(format!("shadow table {at:#x} of PDE {e} of PD {pd:#x} is also reachable as {x:?}"));
                        }
                    }
                }
            }
        }
        // Everything reachable is reachable through its PD until that PD is flushed.
        for (&at, x) in &r {
            match x.role {
                Role::Pd { .. } => {
                    self.pending.entry(at).or_default().insert(at);
                }
                Role::Table { pd, .. } => {
                    self.pending.entry(pd).or_default().insert(at);
                }
                Role::Inst => {}
            }
        }
        self.reach = Some(r);
    }

    /// The (PD, limit) a shadow instance block names.
    fn inst_vm(&self, i: u64) -> (u64, u64) {
        let m = &self.mem;
        let pd = u64::from(m.get(i + u64::from(inst::PDB_LO)) & inst::PDB_ADDR_MASK) | u64::from(m.get(i + u64::from(inst::PDB_HI))) << 32;
        let limit = u64::from(m.get(i + u64::from(inst::LIMIT_LO))) | u64::from(m.get(i + u64::from(inst::LIMIT_HI)) & 0xff) << 32;
        (pd, limit)
    }

    /// The tables shadow PDE `e` of the PD at `pd` points the MMU at: (address, big, entries).
    fn pde_tables(&self, pd: u64, limit: u64, e: u64) -> Vec<(u64, bool, u64)> {
        let raw = self.mem.get64(pd + 8 * e);
        let size_shift = ((raw >> 2) & 3) as u32;
        let mut v = Vec::new();
        for (word, big) in [(raw as u32, true), ((raw >> 32) as u32, false)] {
            let (aper, at) = pde_half(word);
            let entries = reachable(limit, e, big, size_shift);
            if aper != 0 && entries > 0 {
                v.push((at, big, entries));
            }
        }
        v
    }

    fn structure_at(&mut self, pa: u64) -> Option<(u64, Reached)> {
        self.ensure_reach();
        let (&at, &x) = self.reach.as_ref()?.range(..=pa).next_back()?;
        (pa < at + x.len()).then_some((at, x))
    }

    // ---- checks of shadow structures

    /// A shadow instance block the GPU may load.
    fn check_inst(&mut self, who: usize, i: u64, when: &str) {
        let mut bad = Vec::new();
        if !i.is_multiple_of(inst::SIZE) || self.owned_block(who, i, inst::SIZE).is_none() {
            bad.push("not a live pool block of its own".to_string());
        }
        let w = |o: u32| self.mem.get(i + u64::from(o));
        let t = &self.t[who];
        if w(ramfc::HCE_CTRL) != 0 {
            bad.push(format!("physical-copy gate open: HCE_CTRL {:#x}", w(ramfc::HCE_CTRL)));
        }
        let (lo, hi) = (w(ramfc::USERD_LO), w(ramfc::USERD_HI));
        let userd = u64::from(lo & ramfc::USERD_ADDR_MASK) | u64::from(hi) << 32;
        // Host channels use the host's USERD page of one of the vGPU's own host channels.
        let own_userd = (0..t.slice.channels).filter_map(|c| t.slice.channel_to_host(c)).any(|h| userd == gpuvm_shadow_tests::mediator::host_userd(h));
        if lo & ramfc::USERD_TARGET_MASK != target::VRAM || !own_userd {
            bad.push(format!("USERD {}:{userd:#x} not a host USERD page of its slice", tgt_name(lo)));
        }
        let pdb = w(inst::PDB_LO);
        let (pd, limit) = self.inst_vm(i);
        let pdes = (limit >> PDE_SHIFT) + 1;
        if pdb & inst::PDB_TARGET_MASK != target::VRAM || w(inst::LIMIT_HI) > 0xff || w(inst::PDB_HI) > 0xff {
            bad.push(format!("PDB {pdb:#x}:{:#x} / limit high {:#x}", w(inst::PDB_HI), w(inst::LIMIT_HI)));
        } else if self.owned_block(who, pd, pdes * 8).is_none() {
            bad.push(format!("PD {pd:#x} for a limit of {limit:#x} ({pdes} PDEs) is not a live pool block of its own that big"));
        }
        let ctx = [(inst::GR_CTX_LO, inst::GR_CTX_HI), (inst::PCOPY0_CTX_LO, inst::PCOPY0_CTX_HI), (inst::PCOPY1_CTX_LO, inst::PCOPY1_CTX_HI)];
        for (c, _) in ctx {
            let v = w(c);
            if v != 0 && (v & inst::CTX_VALID == 0 || v & !(inst::CTX_ADDR_MASK | inst::CTX_VALID) != 0) {
                bad.push(format!("engine context {c:#x} = {v:#x} is not a virtual pointer"));
            }
        }
        let kept = |o: u32| {
            RAMFC_COPIED.contains(&o)
                || [ramfc::USERD_LO, ramfc::USERD_HI, inst::PDB_LO, inst::PDB_HI, inst::LIMIT_LO, inst::LIMIT_HI].contains(&o)
                || ctx.iter().any(|&(l, h)| o == l || o == h)
        };
        for o in (0..inst::SIZE as u32).step_by(4).filter(|&o| !kept(o)) {
            if w(o) != 0 {
                bad.push(format!("word {o:#x} = {:#x} carried into the shadow", w(o)));
                break;
            }
        }
        for b in bad {
            self.violation(format!("{when}: vGPU {who} shadow instance block {i:#x}: {b}"));
        }
    }

    /// Shadow PDE `e` of a reachable PD: each present half points at a live table of the same
    /// vGPU holding every reachable entry; returns the tables.
    fn check_pde(&mut self, who: usize, pd: u64, limit: u64, e: u64) -> Vec<(u64, bool, u64)> {
        let raw = self.mem.get64(pd + 8 * e);
        for word in [raw as u32, (raw >> 32) as u32] {
            let (aper, _) = pde_half(word);
            if aper != 0 && aper != vm::PDE_APER_VRAM as u32 {
                self.violation(format!("vGPU {who} shadow PDE {e} of PD {pd:#x} = {raw:#x}: a table outside host VRAM"));
            }
        }
        let tables = self.pde_tables(pd, limit, e);
        for &(at, big, entries) in &tables {
            if self.owned_block(who, at, entries * 8).is_none() {
                self.violation(format!(
                    "vGPU {who} shadow PDE {e} of PD {pd:#x} = {raw:#x}: {} table {at:#x} with {entries} reachable entries is not a live pool block of its own that big",
                    if big { "big" } else { "small" }
                ));
            }
        }
        tables
    }

    /// One shadow PTE of a reachable table; the guest pages it points at.
    fn check_pte(&mut self, who: usize, table: u64, big: bool, e: u64) -> Vec<u64> {
        let raw = self.mem.get64(table + 8 * e);
        if raw & vm::PTE_VALID == 0 {
            return Vec::new();
        }
        let t = &self.t[who];
        let size = 1u64 << page_shift(big);
        let field = (raw >> 4) & 0x0fff_ffff;
        let addr = field << 12;
        let bad = match (raw >> 33) & 3 {
            _ if raw >> 44 != 0 => Some("carries a compression tag".to_string()),
            0 if field >> 25 != 0 => Some("VRAM with peer-index bits".to_string()),
            0 if !(t.in_part(addr & !(size - 1), size) && t.in_part(addr, size)) => Some("VRAM outside the partition".to_string()),
            0 => None,
            1 => Some("a peer aperture".to_string()),
            _ => {
                let iova = addr.wrapping_sub(SYS_HOST);
                let first = iova & !(size - 1);
                let pages: Vec<u64> = (first / PAGE..(first + size) / PAGE).collect();
                if addr < SYS_HOST || !pages.iter().all(|p| t.pinned.contains(p)) {
                    Some(format!("system memory at a page not pinned (IOVA {iova:#x})"))
                } else {
                    return pages;
                }
            }
        };
        if let Some(b) = bad {
            self.violation(format!("vGPU {who} shadow PTE {e} of {} table {table:#x} = {raw:#x}: {b}", if big { "big" } else { "small" }));
        }
        Vec::new()
    }

    /// A whole reachable table (cached while neither it nor the pins changed); its pages.
    fn check_table(&mut self, who: usize, at: u64, big: bool, entries: u64) -> Vec<u64> {
        let gen = self.owned_block(who, at, 8).map_or(u64::MAX, |(a, _)| *self.block_gen.get(&a).unwrap_or(&0));
        if let Some(c) = self.checked.get(&(at, big, entries)) {
            if c.gen >= gen && gen != u64::MAX && c.epoch == self.epoch {
                return c.sys.clone();
            }
        }
        let before = self.violations.len();
        let mut sys = Vec::new();
        for e in 0..entries {
            sys.extend(self.check_pte(who, at, big, e));
            if self.violations.len() > before {
                return sys;
            }
        }
        self.checked.insert((at, big, entries), Checked { gen: self.wgen, epoch: self.epoch, sys: sys.clone() });
        sys
    }

    /// Everything the GPU can reach now, checked (what a step must leave behind, and what a
    /// bind or a flush exposes).
    fn check_all(&mut self, when: &str) {
        let r = self.reach();
        // No two reachable structures share memory.
        let mut end = 0;
        for (&at, x) in &r {
            if at < end {
                self.violation(format!("{when}: reachable shadow structures overlap at {at:#x}"));
            }
            end = end.max(at + x.len());
        }
        for (&at, x) in &r {
            match x.role {
                Role::Inst => self.check_inst(x.owner, at, when),
                Role::Pd { limit, count } => {
                    for e in 0..count {
                        self.check_pde(x.owner, at, limit, e);
                    }
                }
                Role::Table { pd, big, entries } => {
                    let pages = self.check_table(x.owner, at, big, entries);
                    self.pending_sys.entry(pd).or_insert((x.owner, BTreeSet::new())).1.extend(pages);
                }
            }
        }
    }

    /// A pool word was written: whatever the GPU can reach through it must still be sound.
    fn after_pool_write(&mut self, pa: u64) {
        let Some((at, x)) = self.structure_at(pa) else { return };
        self.seen.live_writes += 1;
        match x.role {
            Role::Inst => {
                let o = (pa - at) as u32;
                if [inst::PDB_LO, inst::PDB_HI, inst::LIMIT_LO, inst::LIMIT_HI].contains(&o) {
                    self.reach = None;
                }
                // A channel that may run loads it at any time; a stopped one only when it
                // runs again (checked then).
                let running = self.t[x.owner].bound.iter().any(|(h, &i)| i == at && self.t[x.owner].runnable.contains(h));
                if running {
                    self.check_inst(x.owner, at, "write to the instance block of a runnable channel");
                }
            }
            Role::Pd { limit, .. } => {
                let e = (pa - at) / 8;
                let tables = self.check_pde(x.owner, at, limit, e);
                for (t, big, entries) in tables {
                    // A table is published by its PDE: it must be sound before.
                    let pages = self.check_table(x.owner, t, big, entries);
                    self.pending.entry(at).or_default().insert(t);
                    self.pending_sys.entry(at).or_insert((x.owner, BTreeSet::new())).1.extend(pages);
                }
                self.reach = None;
            }
            Role::Table { pd, big, .. } => {
                let pages = self.check_pte(x.owner, at, big, (pa - at) / 8);
                self.pending_sys.entry(pd).or_insert((x.owner, BTreeSet::new())).1.extend(pages);
            }
        }
    }

    // ---- the Env traits, by vGPU

    fn read(&mut self, who: usize, pa: u64) -> u32 {
        self.tick();
        if !pa.is_multiple_of(4) {
            self.violation(format!("vGPU {who}: unaligned host VRAM read at {pa:#x}"));
        }
        if self.t[who].in_part(pa, 4) {
            return self.mem.get(pa);
        }
        if self.own_host_userd(who, pa) {
            // Its host channels' USERD pages: the guest's view of their progress.
        } else if self.guest_read {
            self.violation(format!("vGPU {who}: a guest read reached host VRAM {pa:#x} outside its partition"));
        } else if !Self::in_pool(pa) || self.owned_block(who, pa, 4).is_none() {
            self.violation(format!("vGPU {who}: host VRAM read at {pa:#x}, outside its partition and its own pool blocks"));
        }
        self.mem.get(pa)
    }

    /// Whether `pa` lies in the host USERD page of one of `who`'s host channels.
    fn own_host_userd(&self, who: usize, pa: u64) -> bool {
        let s = self.t[who].slice;
        (0..s.channels).filter_map(|c| s.channel_to_host(c)).any(|h| {
            let u = gpuvm_shadow_tests::mediator::host_userd(h);
            (u..u + userd::SIZE).contains(&pa)
        })
    }

    fn write(&mut self, who: usize, pa: u64, v: u32) {
        self.tick();
        if !pa.is_multiple_of(4) {
            self.violation(format!("vGPU {who}: unaligned host VRAM write at {pa:#x}"));
        }
        if self.t[who].in_part(pa, 4) {
            self.part_writes.push((pa, v));
            self.mem.set(pa, v);
            return;
        }
        if self.own_host_userd(who, pa) {
            self.mem.set(pa, v);
            return;
        }
        match self.owned_block(who, pa, 4).filter(|_| Self::in_pool(pa)) {
            Some((block, _)) => {
                self.mem.set(pa, v);
                self.wgen += 1;
                self.block_gen.insert(block, self.wgen);
                self.after_pool_write(pa & !3);
            }
            None => {
                let whose = match self.live.range(..=pa).next_back() {
                    Some((&a, &(b, o))) if pa < a + b => format!("vGPU {o}'s pool block {a:#x}+{b:#x}"),
                    _ if Self::in_pool(pa) => "a free pool page".to_string(),
                    _ => "outside the pool and its partition".to_string(),
                };
                self.violation(format!("vGPU {who}: host VRAM write {v:#x} at {pa:#x}: {whose}"));
                self.mem.set(pa, v);
            }
        }
    }

    fn alloc(&mut self, who: usize, bytes: u64) -> Option<u64> {
        self.tick();
        if bytes == 0 || !bytes.is_multiple_of(PAGE) {
            self.violation(format!("vGPU {who}: pool allocation of {bytes:#x} bytes"));
        }
        if self.alloc_fail {
            return None;
        }
        let (&a, &len) = self.free.iter().find(|(_, &len)| len >= bytes)?;
        self.free.remove(&a);
        if len > bytes {
            self.free.insert(a + bytes, len - bytes);
        }
        self.live.insert(a, (bytes, who));
        // Whatever the block held before is stale: it must not count as checked.
        self.wgen += 1;
        self.block_gen.insert(a, self.wgen);
        if self.held(who) > self.t[who].quota {
            self.violation(format!("vGPU {who} holds {:#x} pool bytes, over its quota {:#x}", self.held(who), self.t[who].quota));
        }
        Some(a)
    }

    fn free(&mut self, who: usize, a: u64, bytes: u64) {
        self.tick();
        self.seen.frees += 1;
        if self.live.get(&a) != Some(&(bytes, who)) {
            let what = self.live.get(&a).copied();
            self.violation(format!("vGPU {who} frees {a:#x}+{bytes:#x}, which is {what:x?} (double free, wrong size or not its own)"));
            return;
        }
        let r = self.reach();
        if let Some((&at, x)) = r.range(..a + bytes).next_back() {
            if at + x.len() > a {
                self.violation(format!("vGPU {who} frees {a:#x}+{bytes:#x} while the GPU can reach its {:?} at {at:#x} (vGPU {})", x.role, x.owner));
            }
        }
        let cached: Vec<u64> = self.pending.iter().filter(|(_, s)| s.range(a..a + bytes).next().is_some()).map(|(&pd, _)| pd).collect();
        for pd in cached {
            if r.get(&pd).is_some_and(|x| matches!(x.role, Role::Pd { .. })) {
                self.violation(format!("vGPU {who} frees {a:#x}+{bytes:#x} before flushing the host TLB of PD {pd:#x}, which a bound channel uses and through which the GPU reached it"));
            }
            self.stale.entry(pd).or_default().insert(a);
        }
        self.live.remove(&a);
        self.free.insert(a, bytes);
        let merged: Vec<(u64, u64)> = self.free.iter().map(|(&a, &l)| (a, l)).collect();
        self.free.clear();
        for (a, l) in merged {
            match self.free.iter_mut().next_back() {
                Some((&pa, pl)) if pa + *pl == a => *pl += l,
                _ => {
                    self.free.insert(a, l);
                }
            }
        }
    }

    fn pin(&mut self, who: usize, iova: u64, len: u64) -> Option<u64> {
        self.tick();
        let t = &mut self.t[who];
        let end = iova.checked_add(len)?;
        if !t.has_sys || len == 0 || len > 16 * MIB {
            return None;
        }
        let pages = iova / PAGE..end.div_ceil(PAGE);
        if !pages.clone().all(|p| t.mapped.contains(&p)) {
            return None;
        }
        t.pinned.extend(pages);
        Some(SYS_HOST + iova)
    }

    fn pinned_in(&self, who: usize, iova: u64, len: u64) -> Vec<u64> {
        let end = iova.saturating_add(len).div_ceil(PAGE).max(iova / PAGE);
        self.t[who].pinned.range(iova / PAGE..end).copied().collect()
    }

    fn unpin_range(&mut self, who: usize, iova: u64, len: u64) -> u64 {
        self.tick();
        self.seen.unpins += 1;
        let pages: BTreeSet<u64> = self.pinned_in(who, iova, len).into_iter().collect();
        self.check_all("unpin");
        let reached: Vec<u64> = self
            .reach()
            .iter()
            .filter_map(|(&at, x)| match x.role {
                Role::Table { big, entries, .. } if x.owner == who => Some((at, big, entries)),
                _ => None,
            })
            .flat_map(|(at, big, entries)| self.check_table(who, at, big, entries))
            .filter(|p| pages.contains(p))
            .collect();
        if let Some(p) = reached.first() {
            self.violation(format!("vGPU {who} unpins IOVA {:#x} while a reachable shadow PTE points at it", p * PAGE));
        }
        let r = self.reach();
        for (pd, (o, s)) in &self.pending_sys {
            if let Some(p) = s.intersection(&pages).next().filter(|_| *o == who) {
                if r.get(pd).is_some_and(|x| matches!(x.role, Role::Pd { .. })) {
                    let m = format!("vGPU {who} unpins IOVA {:#x} before flushing the host TLB of PD {pd:#x}, which a bound channel uses and whose shadows pointed at it", p * PAGE);
                    self.violations.push(m);
                }
                self.stale.entry(*pd).or_default().insert(SYS_HOST + p * PAGE);
            }
        }
        for p in &pages {
            self.t[who].pinned.remove(p);
        }
        self.epoch += 1;
        pages.len() as u64
    }

    // ---- host channels

    fn chid(&mut self, who: usize, what: &str, h: u32) -> bool {
        self.tick();
        let ok = self.t[who].host_chid_ok(h);
        if !ok {
            self.violation(format!("vGPU {who}: {what} of host channel {h}, not in its slice {:?}", self.t[who].slice));
        }
        ok
    }

    fn bind(&mut self, who: usize, h: u32, i: Option<u64>) {
        if !self.chid(who, "bind", h) {
            return;
        }
        self.reach = None;
        match i {
            Some(i) => {
                self.seen.binds += 1;
                self.t[who].bound.insert(h, i);
                self.check_all("bind");
                let (pd, _) = self.inst_vm(i);
                if let Some(s) = self.stale.get(&pd).filter(|s| !s.is_empty()) {
                    let m = format!("vGPU {who}: host channel {h} bound to PD {pd:#x}, whose TLB may still hold {s:x?} (freed or unpinned), without a flush");
                    self.violation(m);
                }
            }
            None => {
                self.t[who].bound.remove(&h);
                self.t[who].runnable.remove(&h);
            }
        }
    }

    fn set_runnable(&mut self, who: usize, h: u32, r: bool) {
        if !self.chid(who, "set_runnable", h) {
            return;
        }
        if !r {
            self.t[who].runnable.remove(&h);
            return;
        }
        match self.t[who].bound.get(&h).copied() {
            Some(i) => {
                self.t[who].runnable.insert(h);
                self.check_inst(who, i, "made runnable");
            }
            None => self.violation(format!("vGPU {who}: host channel {h} made runnable while unbound")),
        }
    }

    fn kick(&mut self, who: usize, h: u32) -> Result<(), HostError> {
        self.chid(who, "kick", h);
        self.fail(who, self.kick_fail, HostError::KickTimeout)
    }

    fn doorbell(&mut self, who: usize, h: u32) {
        self.seen.doorbells += 1;
        if self.chid(who, "doorbell", h) && !self.t[who].bound.contains_key(&h) {
            self.violation(format!("vGPU {who}: doorbell of unbound host channel {h}"));
        }
    }

    fn commit(&mut self, who: usize, part: RunlistPart) -> Result<(), HostError> {
        self.tick();
        if part.slice != self.t[who].slice {
            self.violation(format!("vGPU {who}: runlist part for slice {:?}", part.slice));
        }
        for c in part.channels.iter() {
            let t = &self.t[who];
            if !t.slice.channel_to_host(c).is_some_and(|h| t.bound.contains_key(&h)) {
                self.violation(format!("vGPU {who}: runlist lists guest channel {c}, not a bound channel of its own"));
            }
        }
        self.t[who].listed = part.channels.0;
        self.fail(who, self.runlist_fail, HostError::RunlistTimeout)
    }

    fn tlb_flush(&mut self, who: usize, pd: u64) -> Result<(), HostError> {
        self.tick();
        self.seen.flushes += 1;
        if self.owned_block(who, pd, 8).is_none() {
            self.violation(format!("vGPU {who}: host TLB flush of {pd:#x}, not a live pool block of its own"));
        }
        // After the flush the TLB holds only what the GPU can reach from here on.
        self.pending.remove(&pd);
        self.pending_sys.remove(&pd);
        self.stale.remove(&pd);
        if self.reach().contains_key(&pd) {
            self.reach = None;
            self.check_all("host TLB flush");
        }
        // A timed-out flush is reported; the model treats it as done late.
        self.fail(who, self.flush_fail, HostError::TlbTimeout)
    }

    fn fail(&mut self, who: usize, fail: bool, e: HostError) -> Result<(), HostError> {
        if fail {
            self.t[who].errors += 1;
            return Err(e);
        }
        Ok(())
    }
}

/// One vGPU's view of the world: every `Env` trait, tagged with who is acting.
struct Host {
    w: Rc<RefCell<World>>,
    who: usize,
}

impl Vram for Host {
    fn read32(&self, pa: u64) -> u32 {
        self.w.borrow_mut().read(self.who, pa)
    }
    fn write32(&mut self, pa: u64, v: u32) {
        self.w.borrow_mut().write(self.who, pa, v)
    }
}

impl SysMem for Host {
    fn pin(&mut self, iova: u64, len: u64) -> Option<u64> {
        self.w.borrow_mut().pin(self.who, iova, len)
    }
}

impl GuestMemory for Host {
    fn any_pinned(&self, iova: u64, len: u64) -> bool {
        let mut w = self.w.borrow_mut();
        w.tick();
        !w.pinned_in(self.who, iova, len).is_empty()
    }
    fn unpin_range(&mut self, iova: u64, len: u64) -> u64 {
        self.w.borrow_mut().unpin_range(self.who, iova, len)
    }
}

impl TableAlloc for Host {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        self.w.borrow_mut().alloc(self.who, bytes)
    }
    fn free(&mut self, addr: u64, bytes: u64) {
        self.w.borrow_mut().free(self.who, addr, bytes)
    }
}

impl HostChannels for Host {
    fn bind(&mut self, h: u32, inst: Option<u64>) {
        self.w.borrow_mut().bind(self.who, h, inst)
    }
    fn set_runnable(&mut self, h: u32, r: bool) {
        self.w.borrow_mut().set_runnable(self.who, h, r)
    }
    fn kick(&mut self, h: u32) -> Result<(), HostError> {
        self.w.borrow_mut().kick(self.who, h)
    }
    /// What `host_gpu::evict` does on a GPU whose engines let go at the kick.
    fn evict(&mut self, h: u32) -> Result<gpuvm_shadow_tests::host_gpu::Evicted, HostError> {
        self.set_runnable(h, false);
        self.kick(h).map(|()| gpuvm_shadow_tests::host_gpu::Evicted::Preempted)
    }
    fn ring_doorbell(&mut self, h: u32, _put: u32) {
        self.w.borrow_mut().doorbell(self.who, h)
    }
    fn commit_runlist(&mut self, part: RunlistPart) -> Result<(), HostError> {
        self.w.borrow_mut().commit(self.who, part)
    }
    fn tlb_flush(&mut self, pd: u64, _sysmem: bool) -> Result<(), HostError> {
        self.w.borrow_mut().tlb_flush(self.who, pd)
    }
    fn drain_events(&mut self) {}
    fn sync_mode(&self) -> SyncMode {
        self.w.borrow().mode
    }
    fn report(&mut self, _what: HostError) {
        self.w.borrow_mut().t[self.who].reports += 1;
    }
}

// ---- guest operations -------------------------------------------------------------------

/// One step of a guest (or of its user, or of the host around it).
#[derive(Clone, Debug)]
enum Op {
    /// BAR0 write (offset, value).
    W0(u32, u32),
    /// BAR0 read.
    R0(u32),
    /// BAR1/BAR3 write (offset, value).
    BarW(Bar, u64, u32),
    /// BAR1/BAR3 read.
    BarR(Bar, u64),
    /// Its own engines write 8 bytes of its VRAM (guest address): the mediator does not see it.
    Gpu(u64, u64),
    /// The guest writes 8 bytes of its VRAM through PRAMIN (three BAR0 writes: base, low and
    /// high word), as its driver writes page tables and instance blocks.
    Pramin(u64, u64),
    BusMaster(bool),
    /// The user unmaps / maps an IOVA range.
    Unmap(u64, u64),
    Map(u64, u64),
    Reset,
    Close,
    /// A host interrupt with events naming (selector for) shadow instance blocks and host
    /// channels: selectors below 8 pick one of the vGPU's bound channels.
    Deliver { nonstall: bool, fault: Option<(u32, u64)>, pbdma: Option<(u32, u32)>, pgraph: Option<u64> },
    /// The `lazy_shadow` knob.
    Lazy(bool),
    /// Host failures from now on: allocation, kick, runlist, TLB flush.
    Fail(u8),
    /// The victim does something (see `victim`).
    Victim(u8),
    /// A guest TLB flush and a use of the space (see `sync`).
    Sync(u8),
}

fn inst_vm_words(i: u64, pd: u64, limit: u64) -> Vec<Op> {
    vec![
        Op::Gpu(i + u64::from(inst::PDB_LO), pd | u64::from(target::VRAM)),
        Op::Gpu(i + u64::from(inst::LIMIT_LO), limit),
    ]
}

fn pde(big: Option<u64>, small: Option<u64>, size_shift: u64) -> u64 {
    let aper = |t: Option<u64>| if t.is_some() { vm::PDE_APER_VRAM } else { vm::PDE_APER_NONE };
    vm::pde(big.unwrap_or(0), aper(big), small.unwrap_or(0), aper(small)) | size_shift << vm::PDE_SIZE_SHIFT
}

fn vram_pte(pa: u64) -> u64 {
    vm::pte(pa, vm::PTE_APER_VRAM, false, vm::KIND_PITCH)
}

fn sys_pte(iova: u64) -> u64 {
    vm::pte(iova, vm::PTE_APER_SYS_COHERENT, false, vm::KIND_PITCH)
}

/// What a guest driver does to bring a channel up: its VRAM (channel VM, BAR1/BAR3 VMs that
/// map its USERD pages and its own structures, runlist), then its registers, then a doorbell.
fn bring_up(sys: bool, limit: u64) -> Vec<Op> {
    let mut v = Vec::new();
    let i0 = INST[0];
    v.extend(inst_vm_words(i0, PD[0], limit));
    v.push(Op::Gpu(i0 + u64::from(ramfc::USERD_LO), USERD | u64::from(target::VRAM)));
    v.push(Op::Gpu(i0 + u64::from(ramfc::SIGNATURE), u64::from(ramfc::SIGNATURE_VALUE)));
    v.push(Op::Gpu(i0 + u64::from(ramfc::GP_BASE), 0x1000));
    v.push(Op::Gpu(i0 + u64::from(inst::GR_CTX_LO), 0x3000_0000 | u64::from(inst::CTX_VALID)));
    // A guest asking for the physical-copy gate.
    v.push(Op::Gpu(i0 + u64::from(ramfc::HCE_CTRL) - 4, u64::from(ramfc::HCE_CTRL_PRIV_MODE) << 32));
    v.push(Op::Gpu(PD[0], pde(Some(BPT[0]), Some(SPT[0]), 0)));
    for i in 0..8 {
        v.push(Op::Gpu(SPT[0] + 8 * i, vram_pte(DATA + i * PAGE)));
    }
    for i in 8..12 {
        v.push(Op::Gpu(SPT[0] + 8 * i, if sys { sys_pte((i - 8) * PAGE) } else { vram_pte(DATA + i * PAGE) }));
    }
    v.push(Op::Gpu(SPT[0] + 8 * 12, vram_pte(PART + PAGE)));
    v.push(Op::Gpu(BPT[0] + 8, vram_pte(DATA)));
    // BAR1 and BAR3 VMs: USERD pages at VA 0.., then the guest's own structures.
    for i in [1, 2] {
        v.extend(inst_vm_words(INST[i], PD[1], BAR_LIMIT));
    }
    v.push(Op::Gpu(PD[1], pde(None, Some(SPT[1]), 0)));
    for i in 0..8 {
        v.push(Op::Gpu(SPT[1] + 8 * i, vram_pte(USERD + i * PAGE)));
    }
    for (i, at) in [INST[0], PD[0], SPT[0], RUNLIST, BPT[0], INST[1], SPT[1], DATA].into_iter().enumerate() {
        v.push(Op::Gpu(SPT[1] + 8 * (8 + i as u64), vram_pte(at)));
    }
    v.push(Op::Gpu(RUNLIST, u64::from(pfifo::RUNLIST_ENTRY_WORD1) << 32));
    v.push(Op::BusMaster(true));
    v.push(Op::W0(pmc::ENABLE, pmc::ENABLE_ALL));
    v.push(Op::W0(pfifo::CTRL, pfifo::CTRL_ENABLE));
    v.push(Op::W0(pbus::BAR1_INST, pbus::BarInst::vm(INST[1]).raw()));
    v.push(Op::W0(pbus::BAR3_INST, pbus::BarInst::vm(INST[2]).raw()));
    v.push(Op::W0(pfifo::UserdPollBase::OFFSET, pfifo::UserdPollBase::default().with_enable(true).raw()));
    v.push(Op::W0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST[0]).raw()));
    v.push(Op::W0(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw()));
    v.push(Op::W0(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(RUNLIST).with_target(target::VRAM).raw()));
    v.push(Op::W0(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(1).raw()));
    v.push(Op::BarW(Bar::Bar1, u64::from(userd::GP_PUT), 1));
    v
}

/// What the victim does when the attacker lets it: flush, rebind, move a page table, ring.
fn victim(k: u8) -> Vec<Op> {
    let flush = Op::W0(mmu::Invalidate::OFFSET, mmu::Invalidate::default().with_all_pdb(true).with_trigger(true).raw());
    match k % 5 {
        0 => vec![flush],
        1 => vec![
            Op::W0(pfifo::ChanInst::offset(0), 0),
            Op::W0(pfifo::ChanInst::offset(0), pfifo::ChanInst::bound(INST[0]).raw()),
            Op::W0(pfifo::ChanState::offset(0), pfifo::ChanState::INITIAL.raw()),
        ],
        // PDE 0 moves between page tables and sizes: shadow tables are freed and allocated.
        2 => vec![Op::Pramin(PD[0], pde(Some(BPT[1]), Some(SPT[1]), 3)), flush],
        3 => vec![Op::Pramin(PD[0], pde(Some(BPT[0]), Some(SPT[0]), 0)), flush],
        _ => vec![Op::BarW(Bar::Bar1, u64::from(userd::GP_PUT), u32::from(k))],
    }
}

/// A guest TLB flush (all spaces, or the channel's PD) and then what makes the GPU use a
/// space: a doorbell, a kick, a runlist commit (lazy mode syncs there).
fn sync(k: u8) -> Vec<Op> {
    let trigger = mmu::Invalidate::default().with_trigger(true);
    let mut v = match k & 1 {
        0 => vec![Op::W0(mmu::Invalidate::OFFSET, trigger.with_all_pdb(true).raw())],
        _ => vec![
            Op::W0(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(PD[0]).raw()),
            Op::W0(mmu::Invalidate::OFFSET, trigger.with_page_all(true).raw()),
        ],
    };
    let chid = u32::from(k >> 4) % 3;
    v.push(match (k >> 1) % 4 {
        0 | 1 => Op::BarW(Bar::Bar1, u64::from(chid) * pfifo::USERD_POLL_STRIDE + u64::from(userd::GP_PUT), u32::from(k)),
        2 => Op::W0(pfifo::KICK, chid),
        _ => Op::W0(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(1).raw()),
    });
    v
}

// ---- strategies -------------------------------------------------------------------------

/// Guest VRAM addresses: the structures, their neighbourhood, the partition's edges, beyond.
fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (select(SLOTS.to_vec()), 0u64..64).prop_map(|(s, i)| s + 8 * i),
        2 => (select(SLOTS.to_vec()), 0u64..0x400).prop_map(|(s, w)| s + 4 * w),
        1 => select(vec![PART - 8, PART - 4, PART, PART + 8, 1 << 32, (1 << 40) - 8]),
        1 => (0..PART / 4).prop_map(|w| 4 * w),
        1 => any::<u64>().prop_map(|a| a & !3),
    ]
}

/// A guest address as a register or pointer word holds it: 4 KiB aligned, any target.
fn addr_word() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => (select(SLOTS.to_vec()), 0u32..4).prop_map(|(s, t)| s as u32 | t),
        1 => (0u64..(2 * PART) / PAGE, 0u32..4).prop_map(|(p, t)| (p * PAGE) as u32 | t),
        1 => any::<u32>(),
    ]
}

/// 64-bit page-table entries and instance-block word pairs.
fn entry() -> impl Strategy<Value = u64> {
    let table = || prop_oneof![select(vec![BPT[0], BPT[1], SPT[0], SPT[1], INST[0], PD[0]]), (0..2 * PART / PAGE).prop_map(|p| p * PAGE)];
    prop_oneof![
        3 => (prop::option::of(table()), prop::option::of(table()), 0u64..4, 0u64..4)
            .prop_map(|(b, s, size, ap)| pde(b, s, size) | if ap == 3 { 0x2_0000_0002 } else { 0 }),
        3 => (0..PART / PAGE, any::<bool>()).prop_map(|(p, ro)| vm::pte(p * PAGE, vm::PTE_APER_VRAM, ro, vm::KIND_PITCH)),
        1 => (PART / PAGE..(1 << 28), 0u64..256).prop_map(|(p, k)| vm::pte(p * PAGE, vm::PTE_APER_VRAM, false, k)),
        3 => (0..SYS_SPAN / PAGE, any::<bool>()).prop_map(|(p, nc)| vm::pte(p * PAGE, if nc { vm::PTE_APER_SYS_NONCOHERENT } else { vm::PTE_APER_SYS_COHERENT }, false, 0)),
        1 => (0..SYS_SPAN / (128 << 10)).prop_map(|p| sys_pte(p * (128 << 10))),
        1 => (0..PART / PAGE).prop_map(|p| vm::pte(p * PAGE, vm::PTE_APER_PEER, false, 0)),
        1 => (addr_word(), addr_word()).prop_map(|(lo, hi)| u64::from(lo) | u64::from(hi) << 32),
        1 => (0u64..PART, 0u64..0x100).prop_map(|(lo, hi)| lo | hi << 32),
        2 => any::<u64>(),
        1 => Just(0u64),
    ]
}

fn chid() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..10, 1 => 0u32..130, 1 => any::<u32>()]
}

/// BAR0 writes, weighted to the registers that carry addresses, channel ids and enables.
fn bar0_write() -> impl Strategy<Value = Op> {
    let rows: Vec<u32> = TABLE.iter().flat_map(|e| [e.start, e.end - 4, e.end]).collect();
    let chan_inst = prop_oneof![
        3 => select(INST.to_vec()).prop_map(|i| pfifo::ChanInst::bound(i).raw()),
        1 => addr_word().prop_map(|w| pfifo::ChanInst::from_raw(w >> 12).with_valid(true).raw()),
        1 => Just(0u32),
        1 => any::<u32>(),
    ];
    let invalidate = prop_oneof![
        Just(mmu::Invalidate::default().with_all_pdb(true).with_trigger(true).raw()),
        Just(mmu::Invalidate::default().with_page_all(true).with_trigger(true).raw()),
        any::<u32>(),
    ];
    prop_oneof![
        4 => (0u32..10, chan_inst).prop_map(|(c, v)| Op::W0(pfifo::ChanInst::offset(0) + 8 * c, v)),
        1 => (chid(), any::<u32>()).prop_map(|(c, v)| Op::W0(pfifo::ChanInst::offset(0).wrapping_add(c.wrapping_mul(8)), v)),
        3 => (chid(), prop_oneof![Just(pfifo::ChanState::INITIAL.raw()), Just(0u32), any::<u32>()])
            .prop_map(|(c, v)| Op::W0(pfifo::ChanState::offset(0).wrapping_add(c.wrapping_mul(8)), v)),
        2 => addr_word().prop_map(|w| Op::W0(pfifo::RunlistBase::OFFSET, pfifo::RunlistBase::default().with_addr(u64::from(w & !0xfff)).with_target(w & 3).raw())),
        2 => prop_oneof![0u32..10, Just(pfifo::RunlistSubmit::COUNT_MAX), any::<u32>()]
            .prop_map(|n| Op::W0(pfifo::RunlistSubmit::OFFSET, pfifo::RunlistSubmit::commit(n).raw())),
        1 => (0u64..10, chid()).prop_map(|(i, c)| Op::Gpu(RUNLIST + 8 * i, u64::from(c) | u64::from(pfifo::RUNLIST_ENTRY_WORD1) << 32)),
        2 => (select(vec![pbus::BAR1_INST, pbus::BAR3_INST]), prop_oneof![
                select(INST.to_vec()).prop_map(|i| pbus::BarInst::vm(i).raw()),
                addr_word().prop_map(|w| pbus::BarInst::vm(u64::from(w & !0xfff)).with_target(w & 3).raw()),
                Just(0u32),
                any::<u32>(),
            ]).prop_map(|(o, v)| Op::W0(o, v)),
        2 => addr_word().prop_map(|w| Op::W0(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(u64::from(w & !0xfff)).with_sysram(w & 2 != 0).raw())),
        3 => invalidate.prop_map(|v| Op::W0(mmu::Invalidate::OFFSET, v)),
        2 => gpa().prop_map(|a| Op::W0(pbus::PraminBase::OFFSET, pbus::PraminBase::window(a).0.raw())),
        1 => any::<u32>().prop_map(|v| Op::W0(pbus::PraminBase::OFFSET, v)),
        4 => (0u32..pbus::PRAMIN_WINDOW_SIZE / 4, addr_word()).prop_map(|(w, v)| Op::W0(pbus::PRAMIN_WINDOW + 4 * w, v)),
        2 => (0u32..0x400, any::<u32>()).prop_map(|(w, v)| Op::W0(pbus::PRAMIN_WINDOW + 4 * w, v)),
        2 => prop_oneof![Just(pmc::ENABLE_ALL), Just(pmc::ENABLE_ALL & !pmc::ENABLE_PFIFO), Just(0u32), any::<u32>()].prop_map(|v| Op::W0(pmc::ENABLE, v)),
        2 => prop_oneof![Just(0u32), Just(pfifo::CTRL_ENABLE), any::<u32>()].prop_map(|v| Op::W0(pfifo::CTRL, v)),
        1 => prop_oneof![Just(pfifo::UserdPollBase::default().with_enable(true).raw()), any::<u32>()].prop_map(|v| Op::W0(pfifo::UserdPollBase::OFFSET, v)),
        2 => chid().prop_map(|c| Op::W0(pfifo::KICK, c)),
        1 => Just(Op::W0(pci::BAR0_MSI_REARM, 1)),
        2 => (select(rows), any::<u32>()).prop_map(|(o, v)| Op::W0(o, v)),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(o, v)| Op::W0(o, v)),
    ]
}

/// BAR1/BAR3 offsets: doorbells, the pages the bring-up maps, unaligned, random.
fn bar_off() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..10).prop_map(|c| c * pfifo::USERD_POLL_STRIDE + u64::from(userd::GP_PUT)),
        4 => (0u64..17, 0u64..0x400).prop_map(|(p, w)| p * PAGE + 4 * w),
        1 => (0u64..17 * PAGE).prop_map(|o| (o & !3) + 1 + o % 3),
        1 => (0u64..(pci::BAR1_SIZE / 4)).prop_map(|w| 4 * w),
        1 => any::<u64>(),
    ]
}

fn iova_range() -> impl Strategy<Value = (u64, u64)> {
    (
        prop_oneof![3 => (0..SYS_SPAN / PAGE).prop_map(|p| p * PAGE), 1 => any::<u64>()],
        prop_oneof![Just(PAGE), Just(128 << 10), Just(MIB), Just(SYS_MAPPED), Just(u64::MAX), 1u64..0x3000],
    )
}

/// Shadow-relevant PTE values: VRAM inside and outside, mapped and unmapped system memory,
/// peer, invalid.
fn pte_value(big: bool) -> impl Strategy<Value = u64> {
    let page = 1u64 << page_shift(big);
    prop_oneof![
        3 => (0..PART / page).prop_map(move |p| vram_pte(p * page)),
        3 => (0..SYS_SPAN / page).prop_map(move |p| sys_pte(p * page)),
        1 => (0..SYS_SPAN / PAGE).prop_map(|p| vm::pte(p * PAGE, vm::PTE_APER_SYS_NONCOHERENT, true, 0)),
        1 => (PART / PAGE..PART / PAGE + 64).prop_map(|p| vram_pte(p * PAGE)),
        1 => (0..PART / PAGE).prop_map(|p| vm::pte(p * PAGE, vm::PTE_APER_PEER, false, 0)),
        1 => Just(0u64),
        1 => any::<u64>(),
    ]
}

/// Instance-block pointer words: VRAM pages of the partition with any target bits (pages
/// above 2 MiB move the host address across 4 GiB in the straddling layout, so both shadow
/// words change), virtual engine contexts, anything.
fn inst_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0..PART / PAGE, prop_oneof![3 => Just(0u64), 1 => 0u64..4]).prop_map(|(p, t)| (p * PAGE) | t),
        1 => (0..PART / PAGE).prop_map(|p| (p * PAGE) | u64::from(inst::CTX_VALID)),
        1 => entry(),
    ]
}

/// A guest driver's writes to the structures the bring-up put in use (through PRAMIN, so
/// the mediator sees them): PDEs, PTEs of the channel and BAR VMs, instance-block pointers,
/// runlist entries.
fn driver_write() -> impl Strategy<Value = Op> {
    let tables = || prop::option::of(select(vec![BPT[0], BPT[1], SPT[0], SPT[1], 0x3f_f000, PART]));
    let inst_words = vec![ramfc::USERD_LO, ramfc::USERD_LO, ramfc::USERD_LO, ramfc::GP_BASE, inst::GR_CTX_LO, inst::PCOPY0_CTX_LO, inst::PDB_LO, inst::LIMIT_LO, ramfc::HCE_CTRL - 4];
    prop_oneof![
        3 => (0u64..4, tables(), tables(), prop_oneof![Just(0u64), 0u64..4]).prop_map(|(i, b, s, z)| Op::Pramin(PD[0] + 8 * i, pde(b, s, z))),
        6 => (0u64..32, pte_value(false)).prop_map(|(i, v)| Op::Pramin(SPT[0] + 8 * i, v)),
        2 => (0u64..8, pte_value(true)).prop_map(|(i, v)| Op::Pramin(BPT[0] + 8 * i, v)),
        2 => (0u64..17, pte_value(false)).prop_map(|(i, v)| Op::Pramin(SPT[1] + 8 * i, v)),
        4 => (select(vec![0usize, 0, 0, 1, 2]), select(inst_words), inst_value()).prop_map(|(k, o, v)| Op::Pramin(INST[k] + u64::from(o), v)),
        1 => (0u64..4, chid()).prop_map(|(i, c)| Op::Pramin(RUNLIST + 8 * i, u64::from(c) | u64::from(pfifo::RUNLIST_ENTRY_WORD1) << 32)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let bar = select(vec![Bar::Bar1, Bar::Bar3]);
    prop_oneof![
        30 => bar0_write(),
        4 => prop_oneof![select(TABLE.iter().map(|e| e.start).collect::<Vec<_>>()), (0u32..0x400).prop_map(|w| pbus::PRAMIN_WINDOW + 4 * w), any::<u32>()].prop_map(Op::R0),
        8 => (bar.clone(), bar_off(), addr_word()).prop_map(|(b, o, v)| Op::BarW(b, o, v)),
        2 => (bar, bar_off()).prop_map(|(b, o)| Op::BarR(b, o)),
        4 => (gpa(), entry()).prop_map(|(a, v)| Op::Gpu(a, v)),
        6 => (gpa(), entry()).prop_map(|(a, v)| Op::Pramin(a, v)),
        12 => driver_write(),
        10 => any::<u8>().prop_map(Op::Sync),
        2 => any::<bool>().prop_map(Op::BusMaster),
        2 => iova_range().prop_map(|(i, l)| Op::Unmap(i, l)),
        1 => iova_range().prop_map(|(i, l)| Op::Map(i, l)),
        1 => Just(Op::Reset),
        1 => Just(Op::Close),
        1 => (any::<bool>(), prop::option::of((0u32..40, 0u64..12)), prop::option::of((0u32..4, 0u32..40)), prop::option::of(0u64..12))
            .prop_map(|(nonstall, fault, pbdma, pgraph)| Op::Deliver { nonstall, fault, pbdma, pgraph }),
        1 => any::<bool>().prop_map(Op::Lazy),
        1 => prop_oneof![4 => Just(0u8), 1 => 0u8..16].prop_map(Op::Fail),
        3 => any::<u8>().prop_map(Op::Victim),
    ]
}

// ---- the runner -------------------------------------------------------------------------

/// The guest-visible BAR modes the mediator applied (for the reference of direct mode).
#[derive(Clone, Copy, Default)]
struct GuestModel {
    bus_master: bool,
    pramin_base: u32,
    /// BAR1/BAR3 are in VM mode (an accepted BarInst write with MODE set).
    bar_vm: [bool; 2],
}

struct Case {
    w: Rc<RefCell<World>>,
    /// The guest wrote its VRAM or had a channel bound since its last reset: its partition
    /// may hold its data, and the mediator must say so (the kernel then scrubs it).
    dirty: [bool; 2],
    med: [Mediator<HostStorage>; 2],
    model: [GuestModel; 2],
    clock: FakeClock,
    steps: u64,
}

impl Case {
    fn new(straddle: bool, quota: u64) -> Self {
        let s = slices(straddle);
        let mut world = World::new(s, quota);
        // Sentinels: the victim's data pages, a neighbour below, the host area, above.
        for (i, at) in sentinels(&s).into_iter().enumerate() {
            world.mem.set(at, 0x5e47_0000 | i as u32);
        }
        Case {
            w: Rc::new(RefCell::new(world)),
            dirty: [false; 2],
            med: [
                Mediator::new(s[A], pmc::BOOT_0_QUADRO_6000, quota).expect("mediator"),
                Mediator::new(s[B], pmc::BOOT_0_QUADRO_6000, B_QUOTA).expect("mediator"),
            ],
            model: [GuestModel::default(); 2],
            clock: FakeClock(Cell::new(1 << 30)),
            steps: 0,
        }
    }

    fn call<R>(&mut self, who: usize, f: impl FnOnce(&mut Mediator<HostStorage>, &mut Env<'_>) -> R) -> R {
        let h = |who| Host { w: self.w.clone(), who };
        let (mut vram, mut sys, mut tables, mut host) = (h(who), h(who), h(who), h(who));
        let mut env = Env { vram: &mut vram, sys: &mut sys, tables: &mut tables, host: &mut host, clock: &self.clock };
        f(&mut self.med[who], &mut env)
    }

    /// Runs one step for `who` and checks everything after it.
    fn step(&mut self, who: usize, op: &Op) -> Result<(), TestCaseError> {
        self.steps += 1;
        self.clock.0.set(self.clock.0.get() + 1000);
        {
            let mut w = self.w.borrow_mut();
            w.ops = 0;
            w.budget = budget(w.t[who].quota);
            w.guest_read = matches!(op, Op::R0(_) | Op::BarR(..));
            w.part_writes.clear();
            w.t[who].errors = 0;
            w.t[who].reports = 0;
        }
        let slice = self.med[who].slice();
        // The one partition write a guest write may cause: Some(None) = any address.
        let mut expect: Option<Option<u64>> = None;
        let mut accepted = true;
        match *op {
            Op::W0(off, v) => {
                if (pbus::PRAMIN_WINDOW..pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE).contains(&off) && off % 4 == 0 {
                    let b = pbus::PraminBase::from_raw(self.model[who].pramin_base);
                    let guest = b.addr() + u64::from(off - pbus::PRAMIN_WINDOW);
                    if b.target() == target::VRAM && guest + 4 <= PART {
                        expect = Some(Some(slice.vram_base + guest));
                    }
                }
                accepted = self.call(who, |m, e| m.bar0_write(e, off, v));
                if off == pbus::PraminBase::OFFSET {
                    self.model[who].pramin_base = v;
                }
                if accepted && (off == pbus::BAR1_INST || off == pbus::BAR3_INST) {
                    self.model[who].bar_vm[usize::from(off == pbus::BAR3_INST)] = pbus::BarInst::from_raw(v).mode_vm();
                }
                if (pbus::PRAMIN_WINDOW..pbus::PRAMIN_WINDOW + pbus::PRAMIN_WINDOW_SIZE).contains(&off) && off % 4 == 0 {
                    prop_assert_eq!(accepted, expect.is_some(), "PRAMIN write at {:#x} with base {:#x}", off, self.model[who].pramin_base);
                }
            }
            Op::R0(off) => {
                let _ = self.call(who, |m, e| m.bar0_read(e, off));
            }
            Op::BarW(bar, off, v) => {
                let direct = !self.model[who].bar_vm[usize::from(bar == Bar::Bar3)];
                expect = Some(if direct { Some(slice.vram_base.wrapping_add(off)) } else { None });
                accepted = self.call(who, |m, e| m.bar_write(e, bar, off, v));
                if direct {
                    prop_assert_eq!(accepted, off % 4 == 0 && off.checked_add(4).is_some_and(|e| e <= PART), "direct-mode BAR write at {:#x}", off);
                }
            }
            Op::BarR(bar, off) => {
                let _ = self.call(who, |m, e| m.bar_read(e, bar, off));
            }
            Op::Gpu(gpa, v) => {
                let mut w = self.w.borrow_mut();
                for (k, word) in [(0, v as u32), (4, (v >> 32) as u32)] {
                    if let Some(h) = gpa.checked_add(k).and_then(|g| slice.vram_to_host(g, 4)) {
                        w.mem.set(h, word);
                    }
                }
            }
            Op::BusMaster(on) => {
                self.call(who, |m, e| m.set_bus_master(e, on));
                self.model[who].bus_master = on;
            }
            Op::Unmap(iova, len) => {
                self.call(who, |m, e| m.dma_unmap(e, iova, len));
                let mut w = self.w.borrow_mut();
                let left = w.pinned_in(who, iova, len);
                prop_assert!(left.is_empty(), "pages {:x?} still pinned after the unmap of {:#x}+{:#x}", &left[..left.len().min(4)], iova, len);
                let end = iova.saturating_add(len).min(SYS_SPAN);
                for p in iova / PAGE..end.div_ceil(PAGE) {
                    w.t[who].mapped.remove(&p);
                }
            }
            Op::Map(iova, len) => {
                let mut w = self.w.borrow_mut();
                if w.t[who].has_sys {
                    let end = iova.saturating_add(len).min(SYS_SPAN);
                    for p in iova / PAGE..end.div_ceil(PAGE) {
                        w.t[who].mapped.insert(p);
                    }
                }
            }
            Op::Reset | Op::Close => {
                let close = matches!(op, Op::Close);
                self.call(who, |m, e| if close { m.close(e) } else { m.reset(e) });
                self.model[who] = GuestModel::default();
                let touched = self.med[who].take_touched();
                prop_assert!(touched || !self.dirty[who], "vGPU {} wrote its VRAM or bound a channel, but its partition is not marked for scrubbing", who);
                self.dirty[who] = false;
                let w = self.w.borrow();
                let t = &w.t[who];
                prop_assert!(w.held(who) == 0 && self.med[who].pool_used() == 0, "after a reset vGPU {} holds {:#x} pool bytes", who, w.held(who));
                prop_assert!(t.bound.is_empty() && t.runnable.is_empty() && t.listed == 0, "after a reset vGPU {} is still on the host", who);
                prop_assert!(!close || t.pinned.is_empty(), "after a close vGPU {} still pins {} pages", who, t.pinned.len());
            }
            Op::Deliver { nonstall, fault, pbdma, pgraph } => {
                let (own, other, chans): (Vec<u64>, Vec<u64>, Vec<(u32, u64)>) = {
                    let w = self.w.borrow();
                    let chans = w.t.iter().flat_map(|t| t.bound.iter().map(|(&h, &i)| (h, i))).collect();
                    (w.t[who].bound.values().copied().collect(), w.t[1 - who].bound.values().copied().collect(), chans)
                };
                // What the host resolves when it reads a record: the channel bound to the block.
                let chan_of = |inst: u64| chans.iter().find(|c| c.1 == inst).map(|c| c.0);
                // Selectors: its own shadow instance blocks, the other vGPU's, anything.
                let pick = |s: u64| match s {
                    0..4 => own.get(s as usize).copied().unwrap_or(s),
                    4..8 => other.get(s as usize - 4).copied().unwrap_or(s),
                    _ => s << 12,
                };
                let names_own = nonstall
                    || fault.is_some_and(|(u, s)| (u as usize) < HostEvents::default().faults.len() && own.contains(&pick(s)))
                    || pbdma.is_some_and(|(i, h)| (i as usize) < HostEvents::default().pbdma.len() && slice.channel_from_host(h).is_some())
                    || pgraph.is_some_and(|s| own.contains(&pick(s)));
                let before = (!names_own).then(|| self.observe(who));
                let mut ev = HostEvents { nonstall, ..HostEvents::default() };
                if let Some((unit, s)) = fault {
                    if let Some(f) = ev.faults.get_mut(unit as usize) {
                        *f = Some(HostFault { inst: pick(s), va: 0x1234_5000, info: 2, host_chid: chan_of(pick(s)) });
                    }
                }
                if let Some((i, h)) = pbdma {
                    if let Some(p) = ev.pbdma.get_mut(i as usize) {
                        *p = Some(PbdmaError { intr: pfifo::PBDMA_INTR_ILLEGAL_MTHD, method: 0x100, data: 1, host_chid: h });
                    }
                }
                ev.pgraph = pgraph.map(|s| PgraphError { intr: 1 << 20, data_error: 0x101, trapped: [1, 2], inst: pick(s), host_chid: chan_of(pick(s)) });
                // A non-stall interrupt reaches the vGPU when the host attributed it to it (the fuzz
                // decides that as the host would, by the flag).
                self.med[who].deliver(&ev, nonstall);
                if let Some(before) = before {
                    prop_assert_eq!(before, self.observe(who), "host events of other channels reached vGPU {}: {:x?}", who, ev);
                }
                let _ = self.med[who].take_irq_edge();
            }
            Op::Lazy(lazy) => self.w.borrow_mut().mode = if lazy { SyncMode::Lazy } else { SyncMode::Naive },
            Op::Fail(bits) => {
                let mut w = self.w.borrow_mut();
                (w.alloc_fail, w.kick_fail, w.runlist_fail, w.flush_fail) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
            }
            Op::Victim(_) | Op::Sync(_) | Op::Pramin(..) => unreachable!("expanded by the caller"),
        }
        let _ = self.med[who].take_irq_edge();
        self.check(who, op, expect.filter(|_| accepted), accepted)
    }

    /// What the guest can see of its interrupt state: the line and the status registers.
    fn observe(&mut self, who: usize) -> (bool, Vec<Option<u32>>) {
        let mut regs = vec![pfifo::INTR, pfifo::VM_FAULT_UNITS, pfifo::PBDMA_INTR_UNITS, pfifo::ENGINE_INTR_UNITS, pfifo::engine_intr(0)];
        regs.extend([pgraph::INTR, pgraph::DATA_ERROR_CODE, pgraph::INTR_CHANNEL_INST, pmc::INTR_HOST]);
        regs.extend((0..pfifo::PBDMA_COUNT).flat_map(|i| [pfifo::PBDMA_INTR, pfifo::PBDMA_METHOD, pfifo::PBDMA_CHID].map(|r| pfifo::pbdma_base(i) + r)));
        regs.extend((0..pfifo::VM_FAULT_UNITS_MAX).flat_map(|u| [pfifo::VmFaultInst::offset(u), pfifo::VmFaultInfo::offset(u)]));
        let values = regs.into_iter().map(|off| self.call(who, |m, e| m.bar0_read(e, off))).collect();
        (self.med[who].irq_line(), values)
    }

    /// The invariants after a step of `who`.
    fn check(&mut self, who: usize, op: &Op, expect: Option<Option<u64>>, accepted: bool) -> Result<(), TestCaseError> {
        let mut w = self.w.borrow_mut();
        w.guest_read = false;
        w.check_all("end of step");
        w.seen.steps += 1;
        w.seen.max_step = w.seen.max_step.max(w.ops);
        let v = std::mem::take(&mut w.violations);
        prop_assert!(v.is_empty(), "step {} ({:x?}) by vGPU {}:\n  {}", self.steps, op, who, v.join("\n  "));
        // Guest data reaches the partition only as the one word the guest wrote.
        let writes = std::mem::take(&mut w.part_writes);
        match (op, expect) {
            (Op::W0(_, v) | Op::BarW(_, _, v), Some(at)) if accepted => {
                prop_assert!(writes.len() == 1 && writes[0].1 == *v && at.is_none_or(|a| a == writes[0].0),
                    "guest write {:x?} expected at {:x?}, partition writes {:x?}", op, at, writes);
            }
            _ => prop_assert!(writes.is_empty(), "{:x?} wrote the partition: {:x?}", op, writes),
        }
        if !writes.is_empty() || !w.t[who].bound.is_empty() {
            self.dirty[who] = true;
        }
        for (k, t) in w.t.iter().enumerate() {
            let med = &self.med[k];
            let bound: BTreeSet<u32> = med.bound_channels().iter().filter_map(|c| t.slice.channel_to_host(c)).collect();
            prop_assert_eq!(&bound, &t.bound.keys().copied().collect::<BTreeSet<u32>>(), "vGPU {}: bound channels, mediator vs host", k);
            prop_assert!(t.runnable.is_subset(&bound), "vGPU {}: runnable {:?} not all bound {:?}", k, t.runnable, bound);
            let may_run = self.model[k].bus_master && med.vregs().pfifo_running();
            prop_assert!(may_run || (t.runnable.is_empty() && t.listed == 0),
                "vGPU {} with bus master {} / PFIFO running {} keeps channels on the host: runnable {:?}, listed {:#x}",
                k, self.model[k].bus_master, med.vregs().pfifo_running(), t.runnable, t.listed);
            prop_assert_eq!(w.held(k), med.pool_used(), "vGPU {}: pool blocks held vs accounted", k);
            prop_assert!(med.pool_used() <= t.quota, "vGPU {} over its quota", k);
        }
        let t = &w.t[who];
        prop_assert_eq!(t.errors, t.reports, "vGPU {}: host errors returned vs reported", who);
        for (i, at) in sentinels(&[w.t[A].slice, w.t[B].slice]).into_iter().enumerate() {
            prop_assert_eq!(w.mem.get(at), 0x5e47_0000 | i as u32, "sentinel {:#x} changed", at);
        }
        Ok(())
    }

    fn run(&mut self, who: usize, ops: &[Op]) -> Result<(), TestCaseError> {
        for op in ops {
            match *op {
                Op::Victim(k) => self.run(B, &victim(k))?,
                Op::Sync(k) => self.run(who, &sync(k))?,
                Op::Pramin(gpa, v) => {
                    let (base, off) = pbus::PraminBase::window(gpa);
                    self.step(who, &Op::W0(pbus::PraminBase::OFFSET, base.raw()))?;
                    self.step(who, &Op::W0(off, v as u32))?;
                    // The high word may fall in the next 64 KiB step of the window.
                    let (base, off) = pbus::PraminBase::window(gpa.wrapping_add(4));
                    self.step(who, &Op::W0(pbus::PraminBase::OFFSET, base.raw()))?;
                    self.step(who, &Op::W0(off, (v >> 32) as u32))?;
                }
                _ => self.step(who, op)?,
            }
        }
        Ok(())
    }

    /// Both vGPUs closed: nothing of either is left anywhere.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.w.borrow_mut().alloc_fail = false;
        self.step(A, &Op::Close)?;
        self.step(B, &Op::Close)?;
        let w = self.w.borrow();
        prop_assert!(w.live.is_empty(), "pool blocks left after both closed: {:x?}", w.live);
        Ok(())
    }
}

/// Words nobody may change: the victim's data, a neighbour partition below the attacker, the
/// host's own area below the pool, above the victim.
fn sentinels(s: &[Slice; 2]) -> Vec<u64> {
    let mut v = vec![s[A].vram_base - 4, s[A].vram_base - PART, 0, POOL_BASE - 4, s[B].vram_base + PART, s[B].vram_base + PART + MIB];
    v.extend((0..8).map(|i| s[B].vram_base + DATA + 0x1_0000 * i + 4 * i));
    v.push(s[B].vram_base + PART - 4);
    v
}

/// Host accesses one step may make: a few per shadow entry its quota allows (a full sync of
/// every space), plus the fixed costs (instance block copy, runlist, PDs).
fn budget(quota: u64) -> u64 {
    8 * (quota / 8) + 200_000
}

/// One case: the victim up, the attacker up (or not), the attacker's operations, both closed.
fn fuzz(straddle: bool, quota: u64, up: Option<u64>, ops: &[Op]) -> Result<Coverage, TestCaseError> {
    let mut c = Case::new(straddle, quota);
    c.run(B, &bring_up(false, CHAN_LIMITS[1]))?;
    if let Some(limit) = up {
        c.run(A, &bring_up(true, limit))?;
    }
    c.run(A, ops)?;
    let shadow_writes = c.med.iter().map(|m| m.stats.pte_writes).sum();
    c.finish()?;
    let w = c.w.borrow();
    Ok(Coverage { cases: 1, shadow_writes, ..w.seen })
}

/// Arbitrary guest input against the whole mediator: the invariants in the module comment
/// hold at every host access. Prints what the run exercised.
#[test]
fn mediator_fuzz() {
    let cases = fuzz_cases(64);
    let config = ProptestConfig { cases, max_shrink_iters: 4096, failure_persistence: None, ..ProptestConfig::default() };
    let total = RefCell::new(Coverage::default());
    let start = std::time::Instant::now();
    let up = prop_oneof![1 => Just(None), 2 => Just(Some(CHAN_LIMITS[0])), 1 => Just(Some(CHAN_LIMITS[1])), 1 => Just(Some(CHAN_LIMITS[2]))];
    let case = (any::<bool>(), select(vec![64u64 << 10, 256 << 10]), up, prop::collection::vec(op(), 1..160));
    let result = proptest::test_runner::TestRunner::new(config).run(&case, |(straddle, quota, up, ops)| {
        total.borrow_mut().add(&fuzz(straddle, quota, up, &ops)?);
        Ok(())
    });
    let t = total.into_inner();
    eprintln!(
        "mediator_fuzz: {} cases, {} steps in {:.1} s; most host accesses in one step {} (budget {}); {} binds, {} doorbells, {} host TLB flushes, {} frees, {} unpins, {} shadow entries written, {} writes into reachable shadows checked as they happened",
        t.cases, t.steps, start.elapsed().as_secs_f64(), t.max_step, budget(256 << 10), t.binds, t.doorbells, t.flushes, t.frees, t.unpins, t.shadow_writes, t.live_writes
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
