//! The hostile guest's checks (`gpuvm-hostile` in the VM, `mediated_hostile_*` in cargo
//! test): page tables outside the partition, privileged registers, foreign channel ids,
//! physical-mode copies, USERD pointers rewritten a word at a time, address spaces whose
//! shadow needs more than the vGPU's quota, and the victim that holds a known pattern while an
//! attacker runs. A [`Target`] is how a check
//! opens the vGPU under attack and reads the module's counters for it (sysfs in the VM, the
//! mediator's counters in process).
//!
//! Every check prints `ok - ...` or `FAIL - ...` and is counted in [`Checks`].

use crate::driver::hw::Hw;
use crate::driver::vm::{Aper, PDE_SPAN};
use crate::driver::{ChannelOpts, DevMem, Gpu, HostMem, SUBC_COPY};
use crate::transport::PAGE;
use crate::workloads::Params;
use gpuvm_uapi::gf100::{copy, inst, mmu, pbus, pfifo, pgraph, pmc, pushbuf, ramfc, target, userd, vm};
use gpuvm_uapi::kernels::{self, fill as fk};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// The vGPU under test.
pub trait Target {
    /// Opens the vGPU and brings the driver up on it, its channel set up with `opts`.
    fn open_opts(&self, opts: ChannelOpts) -> Result<Gpu, String>;
    /// Opens the vGPU and brings the driver up on it.
    fn open(&self) -> Result<Gpu, String> {
        self.open_opts(ChannelOpts::default())
    }
    /// One of the module's per-vGPU counters (`faults`, `pte_refused`, `mmio_denied`,
    /// `channels`, `vram_base_mib`), as sysfs names them.
    fn counter(&self, name: &str) -> Result<u64, String>;
    /// The USERD pointer of guest channel `chid` as the host GPU has it (the host VRAM address
    /// in its shadow instance block), where the target can see host VRAM (the in-process
    /// host); `None` from inside a VM.
    fn host_userd(&self, _chid: u32) -> Option<u64> {
        None
    }
    /// The host-owned USERD page the shadow of guest channel `chid` must name (the host's page
    /// of its host channel id), where the target knows it; `None` from inside a VM.
    fn host_userd_page(&self, _chid: u32) -> Option<u64> {
        None
    }

    /// How much `mmio_denied` rose while `f` ran.
    fn denied_by(&self, f: impl FnOnce()) -> Result<u64, String>
    where
        Self: Sized,
    {
        let before = self.counter("mmio_denied")?;
        f();
        Ok(self.counter("mmio_denied")? - before)
    }
}

/// What the victim writes and the attacker must never see.
pub const PATTERN: u32 = 0xa11c_e5ec;
/// What the attacker tries to write into the victim's VRAM.
pub const ATTACK: u32 = 0xbad0_bad0;
/// What the attacker's read buffer holds before its copy.
const SENTINEL: u32 = 0x5e47_1e11;
/// An IOVA nobody maps (the transport hands out IOVAs upwards from 4 GiB; GF100 PTEs reach
/// 40 bits).
const UNMAPPED_IOVA: u64 = 0xf0_0000_0000;
/// Bytes each attack copy covers.
const ATTACK_BYTES: usize = 64 << 10;
/// How long an attack copy may take to fault.
const FAULT_WAIT: Duration = Duration::from_secs(15);
/// A host-physical system-memory address for the physical-copy attack (host RAM above the
/// first MiB: what a copy engine reaches without an IOMMU, or another device's DMA mapping).
const HOST_SYS_ADDR: u64 = 0x10_0000;

/// The outcome of each check, printed as it is made.
#[derive(Default)]
pub struct Checks {
    pub passed: u32,
    pub failed: u32,
}

impl Checks {
    pub fn check(&mut self, ok: bool, what: impl Display) -> bool {
        if ok {
            self.passed += 1;
            println!("ok - {what}");
        } else {
            self.failed += 1;
            println!("FAIL - {what}");
        }
        ok
    }
}

/// [`Target`] as a trait object (the victim takes any).
pub trait DynTarget {
    fn open_dyn(&self) -> Result<Gpu, String>;
}

impl<T: Target> DynTarget for T {
    fn open_dyn(&self) -> Result<Gpu, String> {
        self.open()
    }
}

pub fn hw_err(e: impl Display) -> String {
    format!("device: {e}")
}

/// Words of `b` (little-endian u32) equal to `w`.
fn count_words(b: &[u8], w: u32) -> usize {
    b.chunks_exact(4).filter(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) == w).count()
}

// ---- victim ---------------------------------------------------------------------------

/// A victim holding [`PATTERN`] in `mib` MiB of its VRAM.
pub struct PatternHolder {
    g: Gpu,
    m: DevMem,
    words: usize,
}

impl PatternHolder {
    /// Fills `mib` MiB of VRAM with the pattern and checks it is there.
    pub fn fill(t: &dyn DynTarget, c: &mut Checks, mib: u64) -> Result<PatternHolder, String> {
        let mut g = t.open_dyn()?;
        let bytes = mib << 20;
        let words = u32::try_from(bytes / 4).map_err(|_| "--mib too large".to_string())?;
        let mut m = g.malloc(bytes).map_err(hw_err)?;
        let p = Params::new(fk::PARAM_BYTES).ptr(fk::DST, m.va).u32(fk::COUNT, words).u32(fk::VALUE, PATTERN);
        g.launch(kernels::KERNEL_FILL, [words.div_ceil(256), 1, 1], [256, 1, 1], p.bytes()).map_err(hw_err)?;
        g.sync().map_err(hw_err)?;
        let mut buf = vec![0u8; bytes as usize];
        g.memcpy_dtoh(&mut buf, &mut m, 0).map_err(hw_err)?;
        let good = count_words(&buf, PATTERN);
        c.check(good == words as usize, format!("victim: {mib} MiB at guest VRAM {:#x} hold the pattern ({good} of {words} words)", m.vram));
        Ok(PatternHolder { g, m, words: words as usize })
    }

    /// Guest VRAM address of the pattern.
    pub fn vram(&self) -> u64 {
        self.m.vram
    }

    /// Checks that no word changed, then frees and closes.
    pub fn verify(mut self, c: &mut Checks) -> Result<(), String> {
        let mut buf = vec![0u8; self.words * 4];
        self.g.memcpy_dtoh(&mut buf, &mut self.m, 0).map_err(hw_err)?;
        let good = count_words(&buf, PATTERN);
        let attacked = count_words(&buf, ATTACK);
        c.check(
            good == self.words,
            format!("victim: pattern intact after the attack ({} words changed, {attacked} hold the attacker's value)", self.words - good),
        );
        self.g.free(self.m).map_err(hw_err)?;
        self.g.close().map_err(hw_err)?;
        Ok(())
    }
}

// ---- page tables ----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Copy from the attack VA into the attacker's host buffer.
    Read,
    /// Copy from the attacker's host buffer to the attack VA.
    Write,
}

pub fn pagetable<T: Target>(v: &T, c: &mut Checks, target: u64) -> Result<(), String> {
    attack(v, c, target, Aper::Vram, Dir::Read, "read of VRAM outside the partition")?;
    attack(v, c, target, Aper::Vram, Dir::Write, "write of VRAM outside the partition")?;
    attack(v, c, UNMAPPED_IOVA, Aper::Sys, Dir::Read, "read of system memory at an IOVA never mapped")?;
    attack(v, c, UNMAPPED_IOVA, Aper::Sys, Dir::Write, "write of system memory at an IOVA never mapped")?;
    Ok(())
}

/// On a fresh open: map [`ATTACK_BYTES`] at `base` (aperture `aper`) into the channel VM and
/// copy through it with the copy engine. The copy must not complete, the fault must be
/// reported to this vGPU for its own channel, and the counters must show the refused PTEs
/// and the fault. The device is closed without the driver's teardown (its channel is dead).
fn attack<T: Target>(v: &T, c: &mut Checks, base: u64, aper: Aper, dir: Dir, what: &str) -> Result<(), String> {
    let mut g = v.open()?;
    if aper == Aper::Vram && !c.check(base >= g.vram_size, format!("{what}: target {base:#x} lies outside the vGPU's {} MiB", g.vram_size >> 20)) {
        return Ok(());
    }
    let (faults0, refused0) = (v.counter("faults")?, v.counter("pte_refused")?);
    let pages: Vec<u64> = (0..(ATTACK_BYTES / PAGE) as u64).map(|i| base + i * PAGE as u64).collect();
    let va = g.raw_map(&pages, aper).map_err(hw_err)?;
    let mut buf = g.malloc_host(ATTACK_BYTES).map_err(hw_err)?;
    let fill = if dir == Dir::Read { SENTINEL } else { ATTACK };
    for w in buf.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&fill.to_le_bytes());
    }
    let (dst, src) = match dir {
        Dir::Read => (buf.va, va),
        Dir::Write => (va, buf.va),
    };
    g.ce_copy(dst, src, ATTACK_BYTES as u64).map_err(hw_err)?;
    let seq = g.fence_emit().map_err(hw_err)?;
    // Until the fault shows in PFIFO INTR (polled: this does not rely on the interrupt) or
    // the fence passes (the copy went through).
    let start = Instant::now();
    let mut intr = 0;
    while !g.fence_done(seq) && intr & pfifo::INTR_VM_FAULT == 0 && start.elapsed() < FAULT_WAIT {
        std::thread::sleep(Duration::from_millis(10));
        intr = g.raw_hw().rd(pfifo::INTR);
    }
    let done = g.fence_done(seq);
    c.check(!done, format!("{what}: the copy did not complete (after {:?})", start.elapsed()));
    // The fault as the guest sees it: PFIFO VM_FAULT with a record naming its channel's
    // instance block and an address of the attack range.
    let (_, inst) = g.raw_channel();
    let hw = g.raw_hw();
    let units = hw.rd(pfifo::VM_FAULT_UNITS);
    let rec = (0..pfifo::VM_FAULT_UNITS_MAX).filter(|u| units & (1 << u) != 0).find_map(|u| {
        let rinst = pfifo::VmFaultInst::from_raw(hw.rd(pfifo::VmFaultInst::offset(u)));
        let hi = pfifo::VmFaultAddrHi::from_raw(hw.rd(pfifo::VmFaultAddrHi::offset(u)));
        let fva = hi.va() | pfifo::VmFaultAddrLo::from_raw(hw.rd(pfifo::VmFaultAddrLo::offset(u))).va();
        let info = hw.rd(pfifo::VmFaultInfo::offset(u));
        (rinst == pfifo::VmFaultInst::default().with_addr(inst) && (va..va + ATTACK_BYTES as u64).contains(&fva)).then_some((u, fva, info))
    });
    c.check(
        intr & pfifo::INTR_VM_FAULT != 0 && rec.is_some(),
        format!(
            "{what}: VM fault reported on its own channel (PFIFO INTR {intr:#x}, units {units:#x}, record {})",
            rec.map_or("none for its instance block and VA".into(), |(u, a, i)| format!("unit {u:#x} va {a:#x} info {i:#x}"))
        ),
    );
    if dir == Dir::Read {
        let leaked = count_words(buf.as_slice(), PATTERN);
        c.check(leaked == 0, format!("{what}: no victim data came back ({leaked} pattern words)"));
    }
    let (faults1, refused1) = (v.counter("faults")?, v.counter("pte_refused")?);
    c.check(faults1 > faults0, format!("{what}: faults counter rose ({faults0} -> {faults1})"));
    c.check(refused1 > refused0, format!("{what}: pte_refused counter rose ({refused0} -> {refused1})"));
    drop(g);
    Ok(())
}

// ---- BAR remapping --------------------------------------------------------------------

/// How a child process's read of BAR3 offset `off` ended: `Ok(None)` when it read a value,
/// `Ok(Some(signal))` when a signal killed it. The read runs in a forked child because a
/// refused mmap fault kills the reader (SIGBUS).
fn bar3_read_in_child(g: &mut Gpu, off: u64) -> Result<Option<i32>, String> {
    use crate::transport::Bar;
    // SAFETY: the child only reads one word through the inherited mapping and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let _ = g.raw_hw().bar_rd(Bar::Bar3, off);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    Ok(libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)))
}

/// BAR remapping (`bar_remap` on): the driver's BAR3 accesses went through mapped pages; a
/// BAR3 PTE moved from one of its pages to another plus a flush makes the same mapping show
/// the new page (the old one unreachable); BAR3 PTEs naming VRAM outside the partition
/// (`outside`, e.g. a victim's), system memory or a read-only page are refused: the access
/// dies with SIGBUS and nothing is mapped.
pub fn bar_remap<T: Target>(v: &T, c: &mut Checks, outside: u64) -> Result<(), String> {
    use crate::transport::Bar;
    let mut g = v.open()?;
    if !c.check(outside >= g.vram_size, format!("target {outside:#x} lies outside the vGPU's {} MiB", g.vram_size >> 20)) {
        return Ok(());
    }
    let maps = v.counter("bar_maps")?;
    c.check(maps > 0, format!("the driver's BAR3 accesses went through mapped pages (bar_maps {maps})"));
    let page = g.raw_bar3_limit() - PAGE as u64;
    let words = PAGE / 4;
    let fill = |tag: u32| -> Vec<u8> { (0..words as u32).flat_map(|i| (tag | i).to_le_bytes()).collect() };
    let mut a = g.malloc(PAGE as u64).map_err(hw_err)?;
    let mut b = g.malloc(PAGE as u64).map_err(hw_err)?;
    g.memcpy_htod(&mut a, 0, &fill(0x1111_0000)).map_err(hw_err)?;
    g.memcpy_htod(&mut b, 0, &fill(0x2222_0000)).map_err(hw_err)?;
    let pte = |addr: u64, ro: bool, aper: u64| vm::pte(addr, aper, ro, vm::KIND_PITCH);
    g.raw_bar3_pte(page, Some(pte(a.vram, false, vm::PTE_APER_VRAM))).map_err(hw_err)?;
    let seen_a = g.raw_hw().bar_rd(Bar::Bar3, page + 16);
    c.check(seen_a == 0x1111_0004, format!("BAR3 page -> buffer A reads A through the mapping ({seen_a:#x})"));
    let zaps = v.counter("bar_zaps")?;
    g.raw_bar3_pte(page, Some(pte(b.vram, false, vm::PTE_APER_VRAM))).map_err(hw_err)?;
    let seen_b = g.raw_hw().bar_rd(Bar::Bar3, page + 16);
    c.check(seen_b == 0x2222_0004, format!("after the PTE change + flush the same address reads B, A is unreachable ({seen_b:#x})"));
    c.check(v.counter("bar_zaps")? > zaps, "the flush removed the mappings (bar_zaps rose)");
    let attacks = [
        ("VRAM outside the partition", pte(outside, false, vm::PTE_APER_VRAM)),
        ("system memory", pte(UNMAPPED_IOVA, false, vm::PTE_APER_SYS_COHERENT)),
        ("a read-only page", pte(a.vram, true, vm::PTE_APER_VRAM)),
    ];
    for (what, p) in attacks {
        g.raw_bar3_pte(page, Some(p)).map_err(hw_err)?;
        let refused = v.counter("bar_refused")?;
        let sig = bar3_read_in_child(&mut g, page + 16)?;
        c.check(sig == Some(libc::SIGBUS), format!("BAR3 PTE -> {what}: the access dies with SIGBUS ({sig:?})"));
        c.check(v.counter("bar_refused")? > refused, format!("BAR3 PTE -> {what}: bar_refused rose"));
    }
    g.raw_bar3_pte(page, None).map_err(hw_err)?;
    g.free(a).map_err(hw_err)?;
    g.free(b).map_err(hw_err)?;
    g.close().map_err(hw_err)?;
    Ok(())
}

// ---- lazy shadowing and a channel past its doorbell -------------------------------------

/// What the released channel writes (the payload of its semaphore release).
const RELEASE_MARK: u32 = 0x5eaf_00d5;
/// How long an acquire is given to be seen blocking, and a late write to show.
const SETTLE: Duration = Duration::from_millis(100);
/// How long the released channel is given to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Issue 13, item 3: the channel waits on a semaphore acquire (already past its doorbell), the
/// guest moves a page under a mapped VA (PTE rewrite + TLB flush), then the CPU releases the
/// semaphore with a plain memory write the mediator never sees: the channel's next write must
/// land on the new page and nothing on the old one. With the channel idle, a flush in lazy
/// mode (`lazy`: the vGPU's `lazy_shadow` is on) syncs nothing until the next doorbell.
/// Counter used: `shadow_syncs`.
pub fn lazy_in_flight<T: Target>(v: &T, c: &mut Checks, lazy: bool) -> Result<(), String> {
    use gpuvm_uapi::gf100::host;
    let mut g = v.open()?;
    // System memory the CPU writes and reads directly: the semaphore, the page the VA maps
    // first (old) and the page it is moved to (new).
    let mut sem = g.malloc_host(PAGE).map_err(hw_err)?;
    let old = g.malloc_host(PAGE).map_err(hw_err)?;
    let new = g.malloc_host(PAGE).map_err(hw_err)?;
    sem.buf.write32_volatile(0, 0);
    let va = old.va;
    let split = |a: u64| ((a >> 32) as u32, a as u32);
    // Acquire (until the semaphore word is 1), then a release of RELEASE_MARK at `va`: both submitted
    // (doorbells rung) before the tables change.
    let (sh, sl) = split(sem.va);
    g.raw_submit(0, host::SEMAPHORE_A, &[sh, sl, 1, host::SEM_OP_ACQUIRE]).map_err(hw_err)?;
    let (vh, vl) = split(va);
    g.raw_submit(0, host::SEMAPHORE_A, &[vh, vl, RELEASE_MARK, host::SEMAPHORE_D_FENCE_RELEASE]).map_err(hw_err)?;
    std::thread::sleep(SETTLE);
    c.check(old.buf.read32_volatile(0) == 0, "the channel waits on its semaphore acquire");
    g.raw_remap(va, new.buf.pages()[0], Aper::Sys).map_err(hw_err)?;
    let syncs = v.counter("shadow_syncs")?;
    // The CPU releases the channel: no trap, no doorbell, no kick.
    sem.buf.write32_volatile(0, 1);
    let start = Instant::now();
    while old.buf.read32_volatile(0) != RELEASE_MARK && new.buf.read32_volatile(0) != RELEASE_MARK {
        if start.elapsed() > WRITE_TIMEOUT {
            c.check(false, format!("the released channel wrote nowhere in {WRITE_TIMEOUT:?}"));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(SETTLE);
    let (at_old, at_new) = (old.buf.read32_volatile(0), new.buf.read32_volatile(0));
    c.check(at_old == 0, format!("nothing reached the old page through a stale translation ({at_old:#x})"));
    c.check(at_new == RELEASE_MARK, format!("the released channel's write reached the new page ({at_new:#x})"));
    c.check(v.counter("shadow_syncs")? == syncs, "no sync was left for after the CPU's release");
    g.sync().map_err(hw_err)?;
    // Lazy stays lazy for an idle channel: once its work is done (GP_GET written back after
    // the fence's entry: given the settle time), a flush syncs nothing and the doorbell does.
    std::thread::sleep(SETTLE);
    let before = v.counter("shadow_syncs")?;
    g.raw_remap(va, old.buf.pages()[0], Aper::Sys).map_err(hw_err)?;
    let at_flush = v.counter("shadow_syncs")?;
    g.raw_submit(0, host::SEMAPHORE_A, &[vh, vl, RELEASE_MARK + 1, host::SEMAPHORE_D_FENCE_RELEASE]).map_err(hw_err)?;
    let at_doorbell = v.counter("shadow_syncs")?;
    g.sync().map_err(hw_err)?;
    let seen = (old.buf.read32_volatile(0), new.buf.read32_volatile(0));
    c.check(seen == (RELEASE_MARK + 1, RELEASE_MARK), format!("with the page moved back, the next write reached the old page only ({:#x}, {:#x})", seen.0, seen.1));
    if lazy {
        c.check((at_flush, at_doorbell) == (before, before + 1), format!("lazy, channel idle: the flush synced nothing, the doorbell did (syncs {before} -> {at_flush} -> {at_doorbell})"));
    } else {
        c.check(at_flush == before + 1, format!("naive: the flush synced (syncs {before} -> {at_flush})"));
    }
    g.close().map_err(hw_err)?;
    Ok(())
}

// ---- registers ------------------------------------------------------------------------

pub fn registers<T: Target>(v: &T, c: &mut Checks) -> Result<(), String> {
    let mut g = v.open()?;
    let n = v.counter("channels")? as u32;
    let (_, inst) = g.raw_channel();
    let outside = g.vram_size + (16 << 20);
    let denied: [(u32, u32, String); 11] = [
        (pbus::BAR1_INST, pbus::BarInst::vm(outside).raw(), format!("BAR1 instance block at {outside:#x}, outside the partition")),
        (pbus::BAR3_INST, pbus::BarInst::vm(outside).raw(), format!("BAR3 instance block at {outside:#x}, outside the partition")),
        (pbus::BAR1_INST, u32::MAX, "BAR1 instance register := 0xffffffff (garbage, not VRAM)".into()),
        (pbus::BAR3_INST, u32::MAX, "BAR3 instance register := 0xffffffff (garbage, not VRAM)".into()),
        (pfifo::ChanInst::offset(n), pfifo::ChanInst::bound(inst).raw(), format!("chan_inst({n}), first channel beyond its {n}")),
        (pfifo::ChanState::offset(n), 0, format!("chan_state({n}) := 0")),
        (pfifo::ChanInst::offset(pfifo::CHANNELS - 1), 0, format!("chan_inst({}) := 0", pfifo::CHANNELS - 1)),
        (pbus::PEEPHOLE_INST, u32::MAX, "peephole instance register".into()),
        (pfifo::ENG_FAULT, u32::MAX, "PFIFO engine fault/freeze (global)".into()),
        (pfifo::eng_state(0), 0, "PFIFO engine 0 state (global)".into()),
        (pgraph::REGS_START + 0x500, u32::MAX, "an unlisted PGRAPH register (0x400500)".into()),
    ];
    for (reg, val, what) in &denied {
        let hw = g.raw_hw();
        let d = v.denied_by(|| hw.wr(*reg, *val))?;
        c.check(d == 1, format!("write {reg:#08x} := {val:#x} denied and counted (mmio_denied +{d}): {what}"));
    }
    let hw = g.raw_hw();
    let mut got = 0;
    let d = v.denied_by(|| got = hw.rd(pfifo::ChanInst::offset(n)))?;
    c.check(d == 1 && got == 0, format!("read of chan_inst({n}) denied and counted (mmio_denied +{d}), reads {got:#x}"));
    // The refused BAR binds changed nothing: the driver's BAR1 window still round-trips.
    let mut m = g.malloc(PAGE as u64).map_err(hw_err)?;
    let data: Vec<u8> = (0..256u32).flat_map(|i| (PATTERN ^ i).to_le_bytes()).collect();
    g.memcpy_htod(&mut m, 0, &data).map_err(hw_err)?;
    let mut back = vec![0u8; data.len()];
    g.memcpy_dtoh(&mut back, &mut m, 0).map_err(hw_err)?;
    c.check(back == data, "BAR1 still maps the vGPU's own VRAM after the refused instance writes");
    // Global registers the vGPU has its own copy of: the write lands there and nowhere else
    // (the victim vGPU and the host keep running; the test script checks them).
    let hw = g.raw_hw();
    for (reg, val, what) in [(pmc::ENABLE, 0u32, "PMC ENABLE := 0 (all units off)"), (pfifo::CTRL, 0, "PFIFO CTRL := 0 (PFIFO off)")] {
        let d = v.denied_by(|| hw.wr(reg, val))?;
        let back = hw.rd(reg);
        c.check(d == 0 && back == val, format!("{what}: emulated for this vGPU (reads back {back:#x}, mmio_denied +{d})"));
    }
    drop(g);
    Ok(())
}

// ---- channels -------------------------------------------------------------------------

/// Acknowledge PFIFO's runlist and scheduler interrupts.
fn ack_sched(hw: &mut Hw) {
    hw.wr(pfifo::INTR_RUNLIST_STATUS, pfifo::INTR_RUNLIST_DONE);
    hw.wr(pfifo::INTR, pfifo::INTR_SCHED_ERROR | pfifo::INTR_RUNLIST);
}

pub fn channels<T: Target>(v: &T, c: &mut Checks, foreign: u32) -> Result<(), String> {
    let mut g = v.open()?;
    let n = v.counter("channels")? as u32;
    let (chid, inst) = g.raw_channel();
    if foreign < n || foreign >= pfifo::CHANNELS {
        return Err(format!("--foreign {foreign} is not a channel id outside the vGPU's {n}"));
    }
    let hw = g.raw_hw();
    let d = v.denied_by(|| hw.wr(pfifo::ChanInst::offset(foreign), pfifo::ChanInst::bound(inst).raw()))?;
    c.check(d == 1, format!("chan_inst({foreign}) := its own instance block (hijack) denied (mmio_denied +{d})"));
    let d = v.denied_by(|| hw.wr(pfifo::ChanState::offset(foreign), 0))?;
    c.check(d == 1, format!("chan_state({foreign}) := 0 (stop it) denied (mmio_denied +{d})"));
    let mut got = (0, 0);
    let d = v.denied_by(|| got = (hw.rd(pfifo::ChanInst::offset(foreign)), hw.rd(pfifo::ChanState::offset(foreign))))?;
    c.check(d == 2 && got == (0, 0), format!("reads of chan_inst/chan_state({foreign}) denied, read {:#x}/{:#x} (mmio_denied +{d})", got.0, got.1));
    let before = hw.rd(pfifo::KICK);
    let d = v.denied_by(|| hw.wr(pfifo::KICK, foreign))?;
    let after = hw.rd(pfifo::KICK);
    c.check(d == 1 && after == before, format!("KICK := {foreign} denied (mmio_denied +{d}; KICK reads {after:#x}, was {before:#x})"));
    // Every channel id it does not own, both words of the channel table.
    let foreign_ids = pfifo::CHANNELS - n;
    let d = v.denied_by(|| {
        for f in n..pfifo::CHANNELS {
            hw.wr(pfifo::ChanState::offset(f), 0);
            hw.wr(pfifo::ChanInst::offset(f), 0);
        }
    })?;
    c.check(d == 2 * u64::from(foreign_ids), format!("channel-table writes to all {foreign_ids} foreign ids {n}..{} denied (mmio_denied +{d})", pfifo::CHANNELS - 1));
    // Runlists naming a foreign channel: a SCHED_ERROR for the guest, its own entries kept.
    for (list, what) in [(vec![chid, foreign], "its own channel + a foreign one"), (vec![foreign], "only a foreign channel")] {
        ack_sched(g.raw_hw());
        g.raw_runlist(&list).map_err(hw_err)?;
        let hw = g.raw_hw();
        let (intr, se) = (hw.rd(pfifo::INTR), hw.rd(pfifo::SCHED_ERROR));
        c.check(
            intr & pfifo::INTR_SCHED_ERROR != 0 && se == pfifo::SCHED_ERROR_BAD_RUNLIST,
            format!("runlist of {what} {list:?}: SCHED_ERROR raised (PFIFO INTR {intr:#x}, SCHED_ERROR {se:#x})"),
        );
        ack_sched(hw);
        if list.contains(&chid) {
            let r = g.sync();
            c.check(r.is_ok(), format!("its own channel keeps running on that runlist ({})", r.err().map_or("fence done".into(), |e| e.0)));
        }
    }
    g.raw_runlist(&[chid]).map_err(hw_err)?;
    let intr = g.raw_hw().rd(pfifo::INTR);
    c.check(intr & pfifo::INTR_SCHED_ERROR == 0, format!("runlist of its own channel accepted (PFIFO INTR {intr:#x})"));
    ack_sched(g.raw_hw());
    let r = g.sync();
    c.check(r.is_ok(), format!("its own channel runs again ({})", r.err().map_or("fence done".into(), |e| e.0)));
    let r = g.close();
    c.check(r.is_ok(), format!("driver teardown ({})", r.err().map_or("clean".into(), |e| e.0)));
    Ok(())
}

// ---- physical-mode copies ---------------------------------------------------------------

/// One end of a copy-engine copy.
#[derive(Clone, Copy)]
enum End {
    /// The attacker's own host buffer (a channel VA).
    Own,
    /// Host VRAM, physical.
    Vram(u64),
    /// System memory, physical (a bus address).
    Sys(u64),
}

impl End {
    /// ADDRESSING_MODE bits of this end: `physical` and `shift` select the SRC or DST field.
    fn mode(self, physical: u32, shift: u32) -> u32 {
        match self {
            End::Own => 0,
            End::Vram(_) => physical | copy::PHYS_TARGET_LOCAL_FB << shift,
            End::Sys(_) => physical | copy::PHYS_TARGET_NONCOHERENT_SYSMEM << shift,
        }
    }
}

/// Physical-mode copy-engine copies (class 0x90b5 ADDRESSING_MODE): reads and writes of host
/// VRAM `target` (a neighbour's pattern, outside the attacker's partition), reads and writes
/// of host VRAM 0 (the host's BAR3 instance block) and a read of host system memory. The
/// attacker asks for the physical-copy gate in its own RAMFC, as a host driver would; every
/// copy must move nothing and raise a PBDMA error on its own channel.
pub fn physical_copy<T: Target>(v: &T, c: &mut Checks, target: u64) -> Result<(), String> {
    let len = ATTACK_BYTES as u64;
    phys_attack(v, c, End::Vram(target), End::Own, len, &format!("physical read of host VRAM {target:#x} (the victim)"))?;
    phys_attack(v, c, End::Own, End::Vram(target), len, &format!("physical write of host VRAM {target:#x} (the victim)"))?;
    phys_attack(v, c, End::Vram(0), End::Own, len, "physical read of host VRAM 0 (the host's BAR3 instance block)")?;
    phys_attack(v, c, End::Own, End::Vram(0), inst::SIZE, "physical write of host VRAM 0 (the host's BAR3 instance block)")?;
    phys_attack(v, c, End::Sys(HOST_SYS_ADDR), End::Own, len, &format!("physical read of system memory at bus address {HOST_SYS_ADDR:#x}"))?;
    Ok(())
}

/// On a fresh open asking for the gate: one copy of `len` bytes from `src` to `dst`. It must
/// not complete; the guest must see a PBDMA ILLEGAL_MTHD for LAUNCH_DMA on its own channel
/// (no MMU fault: nothing was translated); a read must bring nothing back. The device is
/// closed without the driver's teardown (its channel is dead).
fn phys_attack<T: Target>(v: &T, c: &mut Checks, src: End, dst: End, len: u64, what: &str) -> Result<(), String> {
    let mut g = v.open_opts(ChannelOpts { phys_copy: true })?;
    let mut buf = g.malloc_host(len as usize).map_err(hw_err)?;
    let fill = if let End::Own = dst { SENTINEL } else { ATTACK };
    for w in buf.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&fill.to_le_bytes());
    }
    let addr = |e: End| match e {
        End::Own => buf.va,
        End::Vram(a) | End::Sys(a) => a,
    };
    let mode = src.mode(copy::ADDR_SRC_PHYSICAL, copy::ADDR_SRC_TARGET_SHIFT) | dst.mode(copy::ADDR_DST_PHYSICAL, copy::ADDR_DST_TARGET_SHIFT);
    g.raw_ce_copy(mode, addr(dst), addr(src), len).map_err(hw_err)?;
    let seq = g.fence_emit().map_err(hw_err)?;
    // Until an error shows in PFIFO INTR (polled) or the fence passes (the copy went through).
    let start = Instant::now();
    let mut intr = 0;
    while !g.fence_done(seq) && intr & (pfifo::INTR_PBDMA | pfifo::INTR_VM_FAULT) == 0 && start.elapsed() < FAULT_WAIT {
        std::thread::sleep(Duration::from_millis(10));
        intr = g.raw_hw().rd(pfifo::INTR);
    }
    let done = g.fence_done(seq);
    c.check(!done, format!("{what}: the copy did not complete (after {:?})", start.elapsed()));
    let (chid, _) = g.raw_channel();
    let hw = g.raw_hw();
    let units = hw.rd(pfifo::PBDMA_INTR_UNITS);
    let err = (0..pfifo::PBDMA_COUNT).filter(|i| units & (1 << i) != 0).find_map(|i| {
        let b = pfifo::pbdma_base(i);
        let (pi, m, d, ch) = (hw.rd(b + pfifo::PBDMA_INTR), hw.rd(b + pfifo::PBDMA_METHOD), hw.rd(b + pfifo::PBDMA_DATA), hw.rd(b + pfifo::PBDMA_CHID));
        let launch = m & pfifo::PBDMA_METHOD_ADDR_MASK == copy::LAUNCH_DMA && (m >> pfifo::PBDMA_METHOD_SUBCH_SHIFT) & pushbuf::SUBCH_MASK == SUBC_COPY;
        (pi & pfifo::PBDMA_INTR_ILLEGAL_MTHD != 0 && launch && ch & pfifo::PBDMA_CHID_MASK == chid).then_some((i, pi, m, d))
    });
    c.check(
        intr & pfifo::INTR_PBDMA != 0 && intr & pfifo::INTR_VM_FAULT == 0 && err.is_some(),
        format!(
            "{what}: PBDMA error on its own channel {chid}, no MMU fault (PFIFO INTR {intr:#x}, PBDMA units {units:#x}, {})",
            err.map_or("no ILLEGAL_MTHD for LAUNCH_DMA on its channel".into(), |(i, pi, m, d)| format!("PBDMA{i} intr {pi:#x} method {m:#x} data {d:#x}"))
        ),
    );
    if let End::Own = dst {
        let kept = count_words(buf.as_slice(), SENTINEL);
        let leaked = count_words(buf.as_slice(), PATTERN);
        c.check(kept * 4 == len as usize, format!("{what}: no data came back ({} words changed, {leaked} hold the victim's pattern)", len as usize / 4 - kept));
    }
    drop(g);
    Ok(())
}

// ---- what a previous tenant left ------------------------------------------------------

/// A tenant fills `mib` MiB of its VRAM with [`PATTERN`] and goes away without clearing it:
/// the device is closed with the buffer still allocated (with `reset`, after a
/// VFIO_DEVICE_RESET under the running driver). Returns the buffer's guest VRAM address.
pub fn leave_pattern(t: &dyn DynTarget, c: &mut Checks, mib: u64, reset: bool) -> Result<u64, String> {
    let mut p = PatternHolder::fill(t, c, mib)?;
    let at = p.vram();
    if reset {
        let r = p.g.raw_reset();
        c.check(r.is_ok(), format!("VFIO_DEVICE_RESET with the pattern in VRAM ({})", r.err().map_or("done".into(), |e| e.to_string())));
    }
    // Closed without the driver's teardown: nothing of the buffer is cleared by the tenant.
    drop(p);
    Ok(at)
}

/// The next tenant allocates `mib` MiB (at guest VRAM `at`, where the previous tenant's
/// buffer was, if given: the driver allocates the same way every time) and reads it back
/// through the copy engine: no word may hold [`PATTERN`]. Returns how many did.
pub fn leftover(t: &dyn DynTarget, c: &mut Checks, mib: u64, at: Option<u64>) -> Result<usize, String> {
    let mut g = t.open_dyn()?;
    let bytes = mib << 20;
    let mut m = g.malloc(bytes).map_err(hw_err)?;
    if let Some(a) = at {
        c.check(m.vram == a, format!("new tenant: its {mib} MiB buffer is at guest VRAM {:#x}, where the previous tenant's was ({a:#x})", m.vram));
    }
    let mut buf = vec![0u8; bytes as usize];
    g.memcpy_dtoh(&mut buf, &mut m, 0).map_err(hw_err)?;
    let words = bytes as usize / 4;
    let found = count_words(&buf, PATTERN);
    let zero = count_words(&buf, 0);
    c.check(found == 0, format!("new tenant: no word of the previous tenant's pattern in {mib} MiB at guest VRAM {:#x} ({found} of {words} words hold it, {zero} are zero)", m.vram));
    g.free(m).map_err(hw_err)?;
    g.close().map_err(hw_err)?;
    Ok(found)
}

// ---- whole pointers -------------------------------------------------------------------

/// PFIFO interrupt bits that report an error of the guest's own channel.
const CHANNEL_ERRORS: u32 = pfifo::INTR_VM_FAULT | pfifo::INTR_PBDMA | pfifo::INTR_CHAN_TABLE_ERROR | pfifo::INTR_SCHED_ERROR;

/// A guest USERD pointer: the two RAMFC words.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Userd {
    lo: u32,
    hi: u32,
}

impl Userd {
    fn vram(addr: u64) -> Userd {
        Userd { lo: (addr as u32 & ramfc::USERD_ADDR_MASK) | target::VRAM, hi: (addr >> 32) as u32 }
    }
    fn addr(self) -> u64 {
        u64::from(self.lo & ramfc::USERD_ADDR_MASK) | u64::from(self.hi & 0xff) << 32
    }
    /// The guest VRAM page it names, if that is a whole USERD page of the partition.
    fn valid(self, vram_size: u64) -> Option<u64> {
        let a = self.addr();
        (self.lo & ramfc::USERD_TARGET_MASK == target::VRAM && a + userd::SIZE <= vram_size).then_some(a)
    }
}

impl std::fmt::Display for Userd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}:{:#010x}", self.hi, self.lo)
    }
}

/// How the channel came out of one submission.
enum Probe {
    /// The fence passed and the GPU wrote its progress (GP_GET) into this guest page.
    Works(Option<u64>),
    /// It stopped with an error on its own channel (PFIFO INTR bits).
    Faulted(u32),
    /// Neither within the wait.
    Stuck(u32),
}

/// Whole USERD pointers (issue 11): the attacker rewrites its bound channel's USERD words in
/// its instance block through PRAMIN, one word at a time as a carry attack would: to `cross`,
/// a page of its VRAM whose host address needs a carry into the high word (host high word !=
/// guest high word; a mediator that translated the words one by one would point the GPU 4 GiB
/// away from it, at someone else's VRAM), to values outside its partition (high word 1 or
/// 0xff, the first page past its VRAM, system memory) and back. After each word it preempts
/// its own channel (so the GPU restores it from the shadow RAMFC) and submits a fence: the
/// channel must either keep working on a valid USERD page, the last whole value it wrote that
/// lies in its partition, or fault on itself. Which page the GPU used is seen from its GP_GET
/// write-back (the fence's GP_PUT is put into both candidate pages). The victim (pattern at the
/// carry-less address) is checked by the caller.
pub fn pointers<T: Target>(v: &T, c: &mut Checks, cross: u64) -> Result<(), String> {
    let mut g = v.open()?;
    let (chid, inst) = g.raw_channel();
    let vram = g.vram_size;
    let base = v.counter("vram_base_mib")? << 20;
    let hw = g.raw_hw();
    let orig = Userd { lo: hw.pramin_rd32(inst + u64::from(ramfc::USERD_LO)), hi: hw.pramin_rd32(inst + u64::from(ramfc::USERD_HI)) };
    let Some(home) = orig.valid(vram) else { return Err(format!("its own USERD {orig} is not a page of its VRAM")) };
    if !cross.is_multiple_of(userd::SIZE) || cross + userd::SIZE > vram || (base + cross) >> 32 == cross >> 32 || cross.abs_diff(home) < userd::SIZE {
        return Err(format!(
            "--target {cross:#x}: not a free USERD page of the {} MiB VRAM whose host address ({:#x}) has another high word",
            vram >> 20,
            base + cross
        ));
    }
    println!(
        "channel {chid}: USERD at guest {home:#x} (host {:#x}); carry page guest {cross:#x} -> host {:#x}; a carry-less translation would give host {:#x}",
        base + home,
        base + cross,
        ((base + cross) & 0xffff_ffff) | (cross & !0xffff_ffff)
    );
    // The second page holds the channel's USERD words, so the channel can run on it.
    let hw = g.raw_hw();
    for off in (0..userd::SIZE).step_by(4) {
        let w = hw.pramin_rd32(home + off);
        hw.pramin_wr32(cross + off, w);
    }
    let r = probe(&mut g, [home, cross])?;
    if !expect(c, r, Some(home), "before the attack: its own USERD") {
        return Ok(());
    }
    let (lo, hi) = (u64::from(ramfc::USERD_LO), u64::from(ramfc::USERD_HI));
    let (x, o) = (Userd::vram(cross), orig);
    let past = Userd::vram(vram);
    let steps: [(u64, u32, String); 11] = [
        (lo, x.lo, format!("USERD_LO := {:#x}: the carry page, valid as a whole", x.lo)),
        (hi, 1, "USERD_HI := 1: 4 GiB above the carry page, outside the partition".into()),
        (lo, o.lo, format!("USERD_LO := {:#x} with USERD_HI 1: outside", o.lo)),
        (hi, o.hi, format!("USERD_HI := {:#x}: its own page again", o.hi)),
        (hi, 0xff, "USERD_HI := 0xff: the top of the 40-bit space".into()),
        (lo, 0xffff_f000 | target::VRAM, "USERD_LO := 0xfffff000 with USERD_HI 0xff".into()),
        (hi, 0, "USERD_HI := 0 (4 GiB - 4 KiB): still outside".into()),
        (lo, past.lo, format!("USERD_LO := {:#x}: the first page past its VRAM", past.lo)),
        (lo, (o.lo & ramfc::USERD_ADDR_MASK) | target::SYS_NONCOHERENT, "USERD_LO := its page in system memory".into()),
        (lo, x.lo, format!("USERD_LO := {:#x}: the carry page again", x.lo)),
        (lo, o.lo, format!("USERD_LO := {:#x}: its own page (restored)", o.lo)),
    ];
    let mut cur = orig;
    let mut valid = home;
    for (off, val, what) in steps {
        g.raw_hw().pramin_wr32(inst + off, val);
        if off == lo {
            cur.lo = val;
        } else {
            cur.hi = val;
        }
        if let Some(a) = cur.valid(vram) {
            valid = a;
        }
        // The host channel runs on the host's own USERD page whatever the guest writes; the
        // guest's view (which page shows its GP_GET) follows its last valid whole value.
        if let (Some(h), Some(want)) = (v.host_userd(chid), v.host_userd_page(chid)) {
            c.check(h == want, format!("{what}: guest words now {cur}; the host's shadow USERD is {h:#x}, its host channel's own page is {want:#x}"));
        }
        let r = probe(&mut g, [home, cross])?;
        if !expect(c, r, Some(valid), &what) {
            return Ok(());
        }
    }
    let r = g.close();
    c.check(r.is_ok(), format!("driver teardown ({})", r.err().map_or("clean".into(), |e| e.0)));
    Ok(())
}

/// One submission after a self-preemption: kick its own channel (the GPU restores it from the
/// shadow RAMFC at its next slice), emit a fence, put its GP_PUT into every candidate USERD
/// page and ring again; then see whether it completed and in which page the GPU wrote GP_GET.
fn probe(g: &mut Gpu, pages: [u64; 2]) -> Result<Probe, String> {
    let (chid, _) = g.raw_channel();
    let hw = g.raw_hw();
    hw.wr(pfifo::KICK, chid);
    hw.wait(pfifo::KICK, "its own channel's kick", |k| k == chid).map_err(hw_err)?;
    let seq = g.fence_emit().map_err(hw_err)?;
    let put = g.raw_gp_put();
    for p in pages {
        g.raw_hw().pramin_wr32(p + u64::from(userd::GP_PUT), put);
    }
    g.raw_doorbell();
    let start = Instant::now();
    let mut intr = 0;
    while !g.fence_done(seq) && intr & CHANNEL_ERRORS == 0 && start.elapsed() < FAULT_WAIT {
        std::thread::sleep(Duration::from_millis(5));
        intr = g.raw_hw().rd(pfifo::INTR);
    }
    if g.fence_done(seq) {
        let hw = g.raw_hw();
        let used: Vec<u64> = pages.into_iter().filter(|&p| hw.pramin_rd32(p + u64::from(userd::GP_GET)) == put).collect();
        return Ok(Probe::Works((used.len() == 1).then(|| used[0])));
    }
    Ok(if intr & CHANNEL_ERRORS != 0 { Probe::Faulted(intr) } else { Probe::Stuck(intr) })
}

/// Checks a probe against the page the channel must use (`want`); false when the channel is
/// dead (faulted on itself, or a failure) and the sequence stops.
fn expect(c: &mut Checks, r: Probe, want: Option<u64>, what: &str) -> bool {
    match r {
        Probe::Works(used) => c.check(
            used.is_some() && used == want,
            format!(
                "{what}: its channel keeps working on USERD guest {} (GP_GET written back there; expected {})",
                used.map_or("none of its pages".into(), |p| format!("{p:#x}")),
                want.map_or("-".into(), |p| format!("{p:#x}"))
            ),
        ),
        Probe::Faulted(intr) => {
            c.check(true, format!("{what}: its channel faulted on itself (PFIFO INTR {intr:#x}); the rest is skipped"));
            false
        }
        Probe::Stuck(intr) => {
            c.check(false, format!("{what}: the fence neither passed nor faulted within {FAULT_WAIT:?} (PFIFO INTR {intr:#x})"));
            false
        }
    }
}

// ---- resource exhaustion --------------------------------------------------------------

/// PDEs of each filler address space: the mediator shadows at most 256 (`MAX_PDES`), 32 GiB.
const FILL_PDES: u64 = 256;
/// Filler spaces whose PDEs hold 128-entry big-page tables (SIZE 3): each such table costs
/// the host a 4 KiB shadow for 128 guest entries read, the most pool per unit of shadow work
/// (1 MiB of pool per space); later spaces hold a full small-page and a full big-page table
/// per PDE (264 KiB each), so that any quota is spent within the mediator's 16 spaces.
const LIGHT_SPACES: u32 = 12;
/// Most address spaces the attacker tries (the mediator keeps 16, one is its driver's).
const FILL_SPACES: u32 = 15;
/// Free PDEs of its driver's VM (VA 15.75 and 15.875 GiB) it maps a page through, before and
/// after spending its quota.
const PDE_BEFORE: u64 = 127;
const PDE_AFTER: u64 = 126;
/// What the attacker's own data page holds.
const MARK: u32 = 0x0a11_0c8d;
/// Its 1 MiB buffer: two full small-page tables (256 KiB each), the filler big-page table
/// (8 KiB), the data page, then a PD and an instance block per filler space.
const EX_SPT_BEFORE: u64 = 0;
const EX_SPT_AFTER: u64 = 0x4_0000;
const EX_LPT: u64 = 0x8_0000;
const EX_DATA: u64 = 0x8_2000;
const EX_PD: u64 = 0x9_0000;
const EX_INST: u64 = 0xa_0000;
const EX_BYTES: u64 = 0x10_0000;

/// Resource exhaustion (issue 11, bounded resources): the attacker binds channels on address
/// spaces whose shadows need far more host VRAM than its host-pool quota (page directories
/// of 256 PDEs, each with its own shadow tables), one channel per space, until one cannot be
/// loaded. Guest-visible errors: CHAN_TABLE_ERROR INVALID_TARGET for that channel, and an MMU
/// fault of its own working channel on a full small-page table it adds to its driver's VM
/// once the quota is spent, while the same kind of table added before mapped its data page.
/// `at_peak` runs while it holds everything it got (the caller samples the host pool); the
/// device is then closed without teardown.
pub fn exhaust<T: Target>(v: &T, c: &mut Checks, at_peak: impl FnOnce(&mut Checks) -> Result<(), String>) -> Result<(), String> {
    let mut g = v.open()?;
    let (_, inst0) = g.raw_channel();
    let channels = v.counter("channels")? as u32;
    let faults0 = v.counter("faults")?;
    let hw = g.raw_hw();
    let pd0 = u64::from(hw.pramin_rd32(inst0 + u64::from(inst::PDB_LO)) & inst::PDB_ADDR_MASK) | u64::from(hw.pramin_rd32(inst0 + u64::from(inst::PDB_HI)) & 0xff) << 32;
    let limit0 = u64::from(hw.pramin_rd32(inst0 + u64::from(inst::LIMIT_LO))) | u64::from(hw.pramin_rd32(inst0 + u64::from(inst::LIMIT_HI))) << 32;
    for p in [PDE_BEFORE, PDE_AFTER] {
        let e = u64::from(hw.pramin_rd32(pd0 + p * vm::PDE_SIZE)) | u64::from(hw.pramin_rd32(pd0 + p * vm::PDE_SIZE + 4)) << 32;
        if e != 0 || (p + 1) * PDE_SPAN > limit0 + 1 {
            return Err(format!("PDE {p} of its driver's VM is in use or beyond its limit {limit0:#x}"));
        }
    }
    let ramfc: Vec<u32> = (0..0x100).step_by(4).map(|o| hw.pramin_rd32(inst0 + o)).collect();

    // Its buffer zeroed, the data page marked, entry 0 of both small-page tables mapping it.
    let buf = g.malloc(EX_BYTES).map_err(hw_err)?;
    for (off, len, val) in [(0, EX_BYTES, 0), (EX_DATA, PAGE as u64, MARK)] {
        let words = (len / 4) as u32;
        let p = Params::new(fk::PARAM_BYTES).ptr(fk::DST, buf.va + off).u32(fk::COUNT, words).u32(fk::VALUE, val);
        g.launch(kernels::KERNEL_FILL, [words.div_ceil(256), 1, 1], [256, 1, 1], p.bytes()).map_err(hw_err)?;
        g.sync().map_err(hw_err)?;
    }
    let at = |off: u64| buf.vram + off;
    let pte = vm::pte(at(EX_DATA), vm::PTE_APER_VRAM, false, vm::KIND_PITCH);
    let hw = g.raw_hw();
    for spt in [EX_SPT_BEFORE, EX_SPT_AFTER] {
        hw.pramin_wr32(at(spt), pte as u32);
        hw.pramin_wr32(at(spt) + 4, (pte >> 32) as u32);
    }
    let mut into = [g.malloc_host(PAGE).map_err(hw_err)?, g.malloc_host(PAGE).map_err(hw_err)?];

    // Within its quota: a full small-page table added to its driver's VM maps the page.
    let t = Instant::now();
    add_spt(g.raw_hw(), pd0, PDE_BEFORE, at(EX_SPT_BEFORE))?;
    let (done, fault, words) = copy_from(&mut g, &mut into[0], PDE_BEFORE * PDE_SPAN)?;
    let marked = words.iter().filter(|&&w| w == MARK).count();
    c.check(
        done && marked == words.len(),
        format!("within its quota, a full small-page table added at PDE {PDE_BEFORE} of its VM maps its data page ({}; {marked} of {} words)", if done { "copy done".into() } else { format!("fault {fault:x?}") }, words.len()),
    );

    // Filler spaces, one more channel on each, until a channel cannot be loaded.
    let limit = FILL_PDES * PDE_SPAN - 1;
    let light = vm::pde(at(EX_LPT), vm::PDE_APER_VRAM, 0, vm::PDE_APER_NONE) | 3 << vm::PDE_SIZE_SHIFT;
    let heavy = vm::pde(at(EX_LPT), vm::PDE_APER_VRAM, at(EX_SPT_BEFORE), vm::PDE_APER_VRAM);
    let mut refused = None;
    let last = channels.min(FILL_SPACES + 1);
    for k in 1..last {
        let (pd, inst) = (at(EX_PD + u64::from(k) * 0x1000), at(EX_INST + u64::from(k) * 0x1000));
        let pde = if k <= LIGHT_SPACES { light } else { heavy };
        let hw = g.raw_hw();
        for i in 0..FILL_PDES {
            hw.pramin_wr32(pd + i * vm::PDE_SIZE, pde as u32);
            hw.pramin_wr32(pd + i * vm::PDE_SIZE + 4, (pde >> 32) as u32);
        }
        for (i, w) in ramfc.iter().enumerate() {
            hw.pramin_wr32(inst + 4 * i as u64, *w);
        }
        hw.pramin_wr32(inst + u64::from(inst::PDB_LO), (pd as u32 & inst::PDB_ADDR_MASK) | target::VRAM);
        hw.pramin_wr32(inst + u64::from(inst::PDB_HI), (pd >> 32) as u32);
        hw.pramin_wr32(inst + u64::from(inst::LIMIT_LO), limit as u32);
        hw.pramin_wr32(inst + u64::from(inst::LIMIT_HI), (limit >> 32) as u32);
        hw.wr(pfifo::INTR, pfifo::INTR_CHAN_TABLE_ERROR);
        hw.wr(pfifo::ChanInst::offset(k), pfifo::ChanInst::bound(inst).raw());
        let (intr, code) = (hw.rd(pfifo::INTR), hw.rd(pfifo::CHAN_TABLE_ERROR));
        if intr & pfifo::INTR_CHAN_TABLE_ERROR != 0 && code == pfifo::CHAN_TABLE_ERROR_INVALID_TARGET {
            refused = Some((k, intr));
            hw.wr(pfifo::INTR, pfifo::INTR_CHAN_TABLE_ERROR);
            break;
        }
    }
    c.check(
        refused.is_some(),
        match refused {
            Some((k, intr)) => format!(
                "channel {k} on address space {k} ({}) cannot be loaded: CHAN_TABLE_ERROR INVALID_TARGET (PFIFO INTR {intr:#x}), its quota spent after {:.1?}",
                if k <= LIGHT_SPACES { "256 PDEs with 128-entry big-page tables" } else { "256 PDEs with full small-page tables" },
                t.elapsed()
            ),
            None => format!("channels 1..{} all bound: no guest-visible error", last - 1),
        },
    );
    at_peak(c)?;

    // Over its quota: the same kind of table added to its VM gets no shadow, and its own
    // channel faults on it.
    add_spt(g.raw_hw(), pd0, PDE_AFTER, at(EX_SPT_AFTER))?;
    let (done, fault, _) = copy_from(&mut g, &mut into[1], PDE_AFTER * PDE_SPAN)?;
    c.check(
        !done && fault.is_some(),
        format!(
            "over its quota, a full small-page table added at PDE {PDE_AFTER} gets no shadow: the copy through it faults on its own channel ({})",
            fault.map_or(if done { "it completed".into() } else { "no fault record".into() }, |(u, va, info)| format!("unit {u:#x} va {va:#x} info {info:#x}"))
        ),
    );
    let faults1 = v.counter("faults")?;
    c.check(faults1 > faults0, format!("its faults counter rose ({faults0} -> {faults1})"));
    drop(g);
    Ok(())
}

/// Points PDE `pde` of the page directory at `pd` at the full small-page table `spt` (no
/// big-page table) and flushes the TLB for that directory, as a driver adding a table does.
fn add_spt(hw: &mut Hw, pd: u64, pde: u64, spt: u64) -> Result<(), String> {
    let e = vm::pde(0, vm::PDE_APER_NONE, spt, vm::PDE_APER_VRAM);
    hw.pramin_wr32(pd + pde * vm::PDE_SIZE, e as u32);
    hw.pramin_wr32(pd + pde * vm::PDE_SIZE + 4, (e >> 32) as u32);
    hw.bar_flush().map_err(hw_err)?;
    hw.wait(mmu::CTRL, "TLB flush slot", |v| v & mmu::CTRL_FLUSH_SLOTS_MASK != 0).map_err(hw_err)?;
    hw.wr(mmu::InvalidatePdb::OFFSET, mmu::InvalidatePdb::default().with_addr(pd).with_sysram(false).raw());
    hw.wr(mmu::Invalidate::OFFSET, mmu::Invalidate::default().with_page_all(true).with_trigger(true).raw());
    hw.wait(mmu::CTRL, "TLB flush done", |v| v & mmu::CTRL_FLUSH_DONE != 0).map_err(hw_err)?;
    Ok(())
}

/// One copy-engine copy of a page from channel VA `src` into host page `b`: whether it
/// completed, the VM fault record naming its own channel and an address of that page (if one
/// was reported), and the words read.
#[allow(clippy::type_complexity)]
fn copy_from(g: &mut Gpu, b: &mut HostMem, src: u64) -> Result<(bool, Option<(u32, u64, u32)>, Vec<u32>), String> {
    for w in b.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&SENTINEL.to_le_bytes());
    }
    g.ce_copy(b.va, src, PAGE as u64).map_err(hw_err)?;
    let seq = g.fence_emit().map_err(hw_err)?;
    let start = Instant::now();
    let mut intr = 0;
    while !g.fence_done(seq) && intr & pfifo::INTR_VM_FAULT == 0 && start.elapsed() < FAULT_WAIT {
        std::thread::sleep(Duration::from_millis(10));
        intr = g.raw_hw().rd(pfifo::INTR);
    }
    let done = g.fence_done(seq);
    let (_, inst) = g.raw_channel();
    let hw = g.raw_hw();
    let units = hw.rd(pfifo::VM_FAULT_UNITS);
    let fault = (0..pfifo::VM_FAULT_UNITS_MAX).filter(|u| units & (1 << u) != 0).find_map(|u| {
        let rinst = pfifo::VmFaultInst::from_raw(hw.rd(pfifo::VmFaultInst::offset(u)));
        let hi = pfifo::VmFaultAddrHi::from_raw(hw.rd(pfifo::VmFaultAddrHi::offset(u)));
        let va = hi.va() | pfifo::VmFaultAddrLo::from_raw(hw.rd(pfifo::VmFaultAddrLo::offset(u))).va();
        let info = hw.rd(pfifo::VmFaultInfo::offset(u));
        (rinst == pfifo::VmFaultInst::default().with_addr(inst) && (src..src + PAGE as u64).contains(&va)).then_some((u, va, info))
    });
    let words = b.as_slice().chunks_exact(4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]])).collect();
    Ok((done, fault, words))
}

// ---- runaway work and teardown under it ------------------------------------------------

/// How long a guest waits for the host to stop its endless work (the watchdog's limit, the
/// host's kick timeout and an engine reset, on a loaded machine).
const RUNAWAY_WAIT: Duration = Duration::from_secs(40);
/// How long a page must stay as the guest rewrote it after its channel was stopped.
const QUIET: Duration = Duration::from_millis(500);

/// A fresh open running an endless copy from one of its system-memory pages into another
/// (`dst`, which holds [`SENTINEL`] before); returns once the copy is seen writing there.
pub fn start_endless<T: Target>(v: &T) -> Result<(Gpu, HostMem, HostMem, u32), String> {
    let mut g = v.open()?;
    let mut src = g.malloc_host(PAGE).map_err(hw_err)?;
    let mut dst = g.malloc_host(PAGE).map_err(hw_err)?;
    for w in src.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&ATTACK.to_le_bytes());
    }
    for w in dst.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&SENTINEL.to_le_bytes());
    }
    g.raw_ce_endless(dst.va, src.va).map_err(hw_err)?;
    let seq = g.fence_emit().map_err(hw_err)?;
    let start = Instant::now();
    while count_words(dst.as_slice(), ATTACK) * 4 < PAGE {
        if start.elapsed() > FAULT_WAIT {
            return Err("the endless copy never wrote its destination page".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((g, src, dst, seq))
}

/// Rewrites `dst` with [`SENTINEL`] and checks nothing writes it again for [`QUIET`].
fn stays_unwritten(c: &mut Checks, dst: &mut HostMem, what: &str) {
    for w in dst.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&SENTINEL.to_le_bytes());
    }
    std::thread::sleep(QUIET);
    let kept = count_words(dst.as_slice(), SENTINEL);
    c.check(kept * 4 == PAGE, format!("{what}: the page stays unwritten afterwards ({} of {} words rewritten by the copy)", PAGE / 4 - kept, PAGE / 4));
}

/// Runaway work (issue 11 item 6): one endless copy on the attacker's channel, which holds
/// the copy engine and cannot be preempted. The host's watchdog must stop it: the guest sees
/// PFIFO SCHED_ERROR with CTXSW_TIMEOUT (what a GF100 reports for a channel that cannot be
/// switched out), its fence never passes, and the copy writes nothing afterwards. Returns how
/// long the host took from the first write of the copy to the error.
pub fn runaway<T: Target>(v: &T, c: &mut Checks) -> Result<Duration, String> {
    let (mut g, _src, mut dst, seq) = start_endless(v)?;
    let start = Instant::now();
    let mut intr = 0;
    while intr & pfifo::INTR_SCHED_ERROR == 0 && start.elapsed() < RUNAWAY_WAIT {
        std::thread::sleep(Duration::from_millis(20));
        intr = g.raw_hw().rd(pfifo::INTR);
    }
    let took = start.elapsed();
    let code = g.raw_hw().rd(pfifo::SCHED_ERROR);
    c.check(
        intr & pfifo::INTR_SCHED_ERROR != 0 && code == pfifo::SCHED_ERROR_CTXSW_TIMEOUT,
        format!("runaway: the guest sees SCHED_ERROR CTXSW_TIMEOUT after {took:?} (PFIFO INTR {intr:#x}, code {code:#x})"),
    );
    c.check(!g.fence_done(seq), "runaway: its fence never passes (the copy was abandoned)");
    stays_unwritten(c, &mut dst, "runaway");
    drop(g);
    Ok(took)
}

/// How the attacker's endless copy is torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// The guest clears its channel's CHAN word (unbind).
    Unbind,
    /// VFIO_DEVICE_RESET.
    Reset,
    /// The guest turns PFIFO off in PMC_ENABLE.
    PfifoOff,
    /// The device is closed (its pages go with it: the host checks this one, by the engine
    /// reset it logs before the close returns).
    Close,
    /// The guest frees (unmaps) the page the copy writes (it goes with the mapping: the host
    /// checks this one, by the engine reset it logs before the unmap returns).
    Unmap,
}

/// Teardown under endless work (issue 11 item 3): an endless copy into the attacker's own
/// system-memory page, then `how`; once that returns, the page (rewritten by the guest)
/// must stay unwritten: the host stopped the channel, resetting the engine it held, before
/// the teardown completed.
pub fn teardown<T: Target>(v: &T, c: &mut Checks, how: Teardown) -> Result<(), String> {
    let (mut g, _src, mut dst, _seq) = start_endless(v)?;
    let (chid, _) = g.raw_channel();
    let start = Instant::now();
    match how {
        Teardown::Unbind => g.raw_hw().wr(pfifo::ChanInst::offset(chid), 0),
        Teardown::Reset => g.raw_reset().map_err(hw_err)?,
        Teardown::PfifoOff => {
            let en = g.raw_hw().rd(pmc::ENABLE);
            g.raw_hw().wr(pmc::ENABLE, en & !pmc::ENABLE_PFIFO);
        }
        Teardown::Close => {
            drop(g);
            println!("teardown by Close: closed {:?} after the copy started writing", start.elapsed());
            return Ok(());
        }
        Teardown::Unmap => {
            // Straight to the transport (VFIO's DMA unmap), not the driver's free, which
            // would wait for the copy first.
            g.raw_hw().transport().dma_free(dst.buf);
            println!("teardown by Unmap: unmapped {:?} after the copy started writing", start.elapsed());
            return Ok(());
        }
    }
    let what = format!("teardown by {how:?} (took {:?})", start.elapsed());
    stays_unwritten(c, &mut dst, &what);
    drop(g);
    Ok(())
}
