//! gpuvm-hostile: a hostile guest for the isolation tests. It brings a gpuvm vGPU up with the
//! guest driver's library and then does what a well-behaved driver never does: page-table
//! entries outside its partition, writes to privileged registers, foreign channel ids in the
//! channel table, the runlist and the kick register. It also plays the victim that holds a
//! known pattern in its VRAM while an attacker runs.
//!
//! Every check prints `ok - ...` or `FAIL - ...`; the exit status is 1 if a check failed and
//! 2 if the run could not get that far. The vGPU's counters are read from its sysfs
//! directory (the binary runs in the host VM, next to the mdev).

use gpuvm_guest_driver::driver::hw::Hw;
use gpuvm_guest_driver::driver::vm::Aper;
use gpuvm_guest_driver::driver::Gpu;
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use gpuvm_guest_driver::transport::PAGE;
use gpuvm_guest_driver::workloads::Params;
use gpuvm_uapi::gf100::{pbus, pfifo, pgraph, pmc};
use gpuvm_uapi::kernels::{self, fill as fk};
use std::fmt::Display;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: gpuvm-hostile --mdev UUID COMMAND [options]
commands:
  hold-pattern --mib N --ready FILE --release FILE
                  victim: fill N MiB of VRAM with a known pattern, write its guest VRAM
                  address to FILE, wait for the release FILE, check the pattern is intact
  pagetable --target ADDR
                  attacker: copy-engine reads and writes through VRAM PTEs at guest VRAM
                  ADDR (outside the partition) and a read through system-memory PTEs at
                  an IOVA never mapped; each must fault on its own channel
  registers       attacker: privileged BAR0 writes are emulated per vGPU or denied
  channels --foreign CHID
                  attacker: channel CHID (not its own) in the channel table, the kick
                  register and the runlist is refused";

/// What the victim writes and the attacker must never see.
const PATTERN: u32 = 0xa11c_e5ec;
/// What the attacker tries to write into the victim's VRAM.
const ATTACK: u32 = 0xbad0_bad0;
/// What the attacker's read buffer holds before its copy.
const SENTINEL: u32 = 0x5e47_1e11;
/// An IOVA nobody maps (the transport hands out IOVAs upwards from 4 GiB; GF100 PTEs reach
/// 40 bits).
const UNMAPPED_IOVA: u64 = 0xf0_0000_0000;
/// Bytes each attack copy covers.
const ATTACK_BYTES: usize = 64 << 10;
/// How long an attack copy may take to fault.
const FAULT_WAIT: Duration = Duration::from_secs(15);
/// How long the victim waits for the release file.
const HOLD_TIMEOUT: Duration = Duration::from_secs(240);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Checks::default();
    match run(&args, &mut c) {
        Ok(()) => {
            println!("gpuvm-hostile: {} passed, {} failed", c.passed, c.failed);
            if c.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            println!("gpuvm-hostile: error: {e} ({} passed, {} failed so far)", c.passed, c.failed);
            ExitCode::from(2)
        }
    }
}

/// The outcome of each check, printed as it is made.
#[derive(Default)]
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Display) -> bool {
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

/// The vGPU under test: its device and its sysfs counters.
struct Vgpu {
    uuid: String,
}

impl Vgpu {
    fn counter(&self, name: &str) -> Result<u64, String> {
        let p = format!("/sys/bus/mdev/devices/{}/gpuvm/{name}", self.uuid);
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        s.trim().parse().map_err(|e| format!("{p}: {e}"))
    }

    fn open(&self) -> Result<Gpu, String> {
        let t = VfioTransport::open(VfioTarget::Mdev(self.uuid.clone()), VfioPath::Auto).map_err(|e| format!("open: {e}"))?;
        Gpu::open(Box::new(t), 0, true).map_err(|e| format!("init: {e}"))
    }

    /// How much `mmio_denied` rose while `f` ran.
    fn denied_by(&self, f: impl FnOnce()) -> Result<u64, String> {
        let before = self.counter("mmio_denied")?;
        f();
        Ok(self.counter("mmio_denied")? - before)
    }
}

fn run(args: &[String], c: &mut Checks) -> Result<(), String> {
    let mut uuid = None;
    let mut cmd = None;
    let (mut mib, mut ready, mut release, mut target, mut foreign) = (16u64, None, None, None, None);
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<String>, o: &str| it.next().cloned().ok_or(format!("{o} needs a value\n{USAGE}"));
    let num = |s: String, o: &str| -> Result<u64, String> {
        let r = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        };
        r.map_err(|e| format!("{o} {s}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mdev" => uuid = Some(val(&mut it, a)?),
            "--mib" => mib = num(val(&mut it, a)?, a)?,
            "--ready" => ready = Some(val(&mut it, a)?),
            "--release" => release = Some(val(&mut it, a)?),
            "--target" => target = Some(num(val(&mut it, a)?, a)?),
            "--foreign" => foreign = Some(num(val(&mut it, a)?, a)? as u32),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            w if !w.starts_with('-') && cmd.is_none() => cmd = Some(w.to_string()),
            o => return Err(format!("unexpected argument {o}\n{USAGE}")),
        }
    }
    let v = Vgpu { uuid: uuid.ok_or(format!("no --mdev given\n{USAGE}"))? };
    let need = |o: Option<String>, n: &str| o.ok_or(format!("{n} needed\n{USAGE}"));
    match cmd.as_deref() {
        Some("hold-pattern") => hold_pattern(&v, c, mib, &need(ready, "--ready")?, &need(release, "--release")?),
        Some("pagetable") => pagetable(&v, c, target.ok_or(format!("--target needed\n{USAGE}"))?),
        Some("registers") => registers(&v, c),
        Some("channels") => channels(&v, c, foreign.ok_or(format!("--foreign needed\n{USAGE}"))?),
        _ => Err(format!("no or unknown command\n{USAGE}")),
    }
}

fn hw_err(e: impl Display) -> String {
    format!("device: {e}")
}

/// Words of `b` (little-endian u32) equal to `w`.
fn count_words(b: &[u8], w: u32) -> usize {
    b.chunks_exact(4).filter(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) == w).count()
}

// ---- victim ---------------------------------------------------------------------------

/// Fill `mib` MiB of VRAM with [`PATTERN`], publish its guest VRAM address in `ready`, hold
/// it until `release` exists, and check that no word changed meanwhile.
fn hold_pattern(v: &Vgpu, c: &mut Checks, mib: u64, ready: &str, release: &str) -> Result<(), String> {
    let mut g = v.open()?;
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
    let tmp = format!("{ready}.tmp");
    std::fs::write(&tmp, format!("{:#x}\n", m.vram)).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, ready).map_err(|e| format!("{ready}: {e}"))?;
    let start = Instant::now();
    while !Path::new(release).exists() {
        if start.elapsed() > HOLD_TIMEOUT {
            return Err(format!("{release} did not appear within {HOLD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    buf.fill(0);
    g.memcpy_dtoh(&mut buf, &mut m, 0).map_err(hw_err)?;
    let good = count_words(&buf, PATTERN);
    let attacked = count_words(&buf, ATTACK);
    c.check(
        good == words as usize,
        format!("victim: pattern intact after the attack ({} words changed, {attacked} hold the attacker's value)", words as usize - good),
    );
    g.free(m).map_err(hw_err)?;
    g.close().map_err(hw_err)?;
    Ok(())
}

// ---- page tables ----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Copy from the attack VA into the attacker's host buffer.
    Read,
    /// Copy from the attacker's host buffer to the attack VA.
    Write,
}

fn pagetable(v: &Vgpu, c: &mut Checks, target: u64) -> Result<(), String> {
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
fn attack(v: &Vgpu, c: &mut Checks, base: u64, aper: Aper, dir: Dir, what: &str) -> Result<(), String> {
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
        let rinst = hw.rd(pfifo::vm_fault_inst(u));
        let fva = (hw.rd(pfifo::vm_fault_addr_hi(u)) as u64) << 32 | hw.rd(pfifo::vm_fault_addr_lo(u)) as u64;
        let info = hw.rd(pfifo::vm_fault_info(u));
        (rinst == (inst >> 12) as u32 && (va..va + ATTACK_BYTES as u64).contains(&fva)).then_some((u, fva, info))
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

// ---- registers ------------------------------------------------------------------------

fn registers(v: &Vgpu, c: &mut Checks) -> Result<(), String> {
    let mut g = v.open()?;
    let n = v.counter("channels")? as u32;
    let (_, inst) = g.raw_channel();
    let outside = g.vram_size + (16 << 20);
    let denied: [(u32, u32, String); 11] = [
        (pbus::BAR1_INST, pbus::bar_inst_value(outside), format!("BAR1 instance block at {outside:#x}, outside the partition")),
        (pbus::BAR3_INST, pbus::bar_inst_value(outside), format!("BAR3 instance block at {outside:#x}, outside the partition")),
        (pbus::BAR1_INST, u32::MAX, "BAR1 instance register := 0xffffffff (garbage, not VRAM)".into()),
        (pbus::BAR3_INST, u32::MAX, "BAR3 instance register := 0xffffffff (garbage, not VRAM)".into()),
        (pfifo::chan_inst(n), pfifo::chan_inst_value(inst), format!("chan_inst({n}), first channel beyond its {n}")),
        (pfifo::chan_state(n), 0, format!("chan_state({n}) := 0")),
        (pfifo::chan_inst(pfifo::CHANNELS - 1), 0, format!("chan_inst({}) := 0", pfifo::CHANNELS - 1)),
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
    let d = v.denied_by(|| got = hw.rd(pfifo::chan_inst(n)))?;
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

fn channels(v: &Vgpu, c: &mut Checks, foreign: u32) -> Result<(), String> {
    let mut g = v.open()?;
    let n = v.counter("channels")? as u32;
    let (chid, inst) = g.raw_channel();
    if foreign < n || foreign >= pfifo::CHANNELS {
        return Err(format!("--foreign {foreign} is not a channel id outside the vGPU's {n}"));
    }
    let hw = g.raw_hw();
    let d = v.denied_by(|| hw.wr(pfifo::chan_inst(foreign), pfifo::chan_inst_value(inst)))?;
    c.check(d == 1, format!("chan_inst({foreign}) := its own instance block (hijack) denied (mmio_denied +{d})"));
    let d = v.denied_by(|| hw.wr(pfifo::chan_state(foreign), 0))?;
    c.check(d == 1, format!("chan_state({foreign}) := 0 (stop it) denied (mmio_denied +{d})"));
    let mut got = (0, 0);
    let d = v.denied_by(|| got = (hw.rd(pfifo::chan_inst(foreign)), hw.rd(pfifo::chan_state(foreign))))?;
    c.check(d == 2 && got == (0, 0), format!("reads of chan_inst/chan_state({foreign}) denied, read {:#x}/{:#x} (mmio_denied +{d})", got.0, got.1));
    let before = hw.rd(pfifo::KICK);
    let d = v.denied_by(|| hw.wr(pfifo::KICK, foreign))?;
    let after = hw.rd(pfifo::KICK);
    c.check(d == 1 && after == before, format!("KICK := {foreign} denied (mmio_denied +{d}; KICK reads {after:#x}, was {before:#x})"));
    // Every channel id it does not own, both words of the channel table.
    let foreign_ids = pfifo::CHANNELS - n;
    let d = v.denied_by(|| {
        for f in n..pfifo::CHANNELS {
            hw.wr(pfifo::chan_state(f), 0);
            hw.wr(pfifo::chan_inst(f), 0);
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
