//! The hostile guest's checks (`gpuvm-hostile`) against vGPUs of the mediator on the
//! in-process model: an attacker, a neighbour holding a known pattern right above the
//! attacker's partition, and a victim running checked workloads throughout. Every check must
//! pass, the pattern must be intact and the victim's results correct.

use gpuvm_guest_driver::hostile::{self, Checks, PatternHolder, Target};
use gpuvm_guest_driver::transport::mediated::{HostileTarget as Mediated, MediatedHost, VgpuShared};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use gpuvm_shadow::host_gpu;
use gpuvm_uapi::gf100::pfifo;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VRAM_MIB: u64 = 512;

/// Runs the checked workloads (mmul, hotspot) on `victim` over and over until `stop` is set
/// (at least once); every result must be correct. Returns how many runs completed.
fn victim_runs(host: &MediatedHost, victim: &Arc<VgpuShared>, stop: &AtomicBool) -> u32 {
    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(victim)?)) };
    let mut runs = 0;
    loop {
        for name in ["mmul", "hotspot"] {
            let r = workloads::run(name, &open, &Opts { size: Size::Small, ..Opts::default() });
            assert!(r.ok, "victim {name} during the attack: {}", r.to_json());
            runs += 1;
        }
        if stop.load(Ordering::Relaxed) {
            break runs;
        }
    }
}

/// Runs `attack` on an attacker vGPU while a victim vGPU runs checked workloads in a loop;
/// returns the checks and how many victim runs completed (all must be correct).
fn under_attack(attack: impl FnOnce(&MediatedHost, &Mediated<'_>, &mut Checks)) -> (Checks, u32) {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let stop = AtomicBool::new(false);
    let mut c = Checks::default();
    let runs = std::thread::scope(|s| {
        // At least one run, and runs until the attack is over.
        let t = s.spawn(|| victim_runs(&host, &victim, &stop));
        attack(&host, &attacker, &mut c);
        stop.store(true, Ordering::Relaxed);
        t.join().expect("victim thread")
    });
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
    (c, runs)
}

#[test]
fn mediated_hostile_pagetable() {
    let (c, runs) = under_attack(|host, a, c| {
        // The pattern holder sits right above the attacker in host VRAM.
        let holder = Mediated { host, v: host.create(4).expect("pattern holder") };
        let (ab, bb) = (a.v.slice().vram_base, holder.v.slice().vram_base);
        assert!(bb >= ab + a.v.slice().vram_size, "the holder is above the attacker");
        let p = PatternHolder::fill(&holder, c, 16).expect("fill the pattern");
        // The attacker's guest address that would be the holder's buffer (+1 MiB) if PTEs
        // were not confined: guest x of the attacker is host ab + x.
        let target = (bb - ab) + p.vram() + (1 << 20);
        hostile::pagetable(a, c, target).expect("attack ran");
        p.verify(c).expect("verify the pattern");
        assert!(a.counter("faults").unwrap() >= 4 && a.counter("pte_refused").unwrap() >= 4);
        assert_eq!(holder.counter("faults").unwrap(), 0, "the holder saw no fault");
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 18, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
}

#[test]
fn mediated_hostile_registers() {
    let (c, runs) = under_attack(|_, a, c| hostile::registers(a, c).expect("attack ran"));
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 15, "{} checks ran", c.passed);
    assert!(runs >= 2);
}

#[test]
fn mediated_hostile_channels() {
    let (c, runs) = under_attack(|_, a, c| {
        let foreign = a.v.slice().channels + 3;
        hostile::channels(a, c, foreign).expect("attack ran")
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 10, "{} checks ran", c.passed);
    assert!(runs >= 2);
}

#[test]
fn mediated_hostile_physical_copy() {
    let (c, runs) = under_attack(|host, a, c| {
        let holder = Mediated { host, v: host.create(4).expect("pattern holder") };
        let p = PatternHolder::fill(&holder, c, 16).expect("fill the pattern");
        // The holder's buffer (+1 MiB) as a host VRAM address: what a physical copy names.
        let target = holder.v.slice().vram_base + p.vram() + (1 << 20);
        let vram = host.gpu().vram().clone();
        let host_inst = |vram: &gf100_model::mem::HostMemory| {
            let mut b = vec![0u8; 0x1000];
            assert!(vram.read(0, &mut b));
            b
        };
        let before = host_inst(&vram);
        hostile::physical_copy(a, c, target).expect("attack ran");
        p.verify(c).expect("verify the pattern");
        c.check(host_inst(&vram) == before, "host VRAM 0 (the host's BAR3 instance block) unchanged");
        // Refused before any translation: no MMU fault, on the attacker or the holder.
        assert_eq!(a.counter("faults").unwrap(), 0, "the attacker saw no MMU fault");
        assert_eq!(holder.counter("faults").unwrap(), 0, "the holder saw no fault");
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 16, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
}

/// Words of `len` bytes of the model's VRAM at host address `addr` equal to `w`.
fn vram_words(host: &MediatedHost, addr: u64, len: u64, w: u32) -> usize {
    let mut b = vec![0u8; len as usize];
    assert!(host.gpu().vram().read(addr, &mut b));
    b.chunks_exact(4).filter(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) == w).count()
}

/// Issue 11: a vGPU created on the slice of a removed one read the old tenant's VRAM. Now
/// the old tenant leaves 1 MiB of its pattern and is removed, the new tenant on the same slice
/// allocates the same buffer and reads back no pattern word; each path that scrubs (removal,
/// creation, VFIO reset) is checked on its own in the model's VRAM, and a neighbour holding
/// its pattern throughout is untouched. First, as a control, the same sequence with scrubbing
/// off must show the leak (the check can see one).
#[test]
fn mediated_hostile_scrub() {
    const MIB: u64 = 1;
    let words = (MIB << 20) as usize / 4;
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let mut c = Checks::default();
    let neighbour = Mediated { host: &host, v: host.create(4).expect("neighbour") };
    let held = PatternHolder::fill(&neighbour, &mut c, 4).expect("the neighbour's pattern");

    // Control: nothing scrubs, and the new tenant reads the whole pattern.
    host.set_scrub(false);
    let old = Mediated { host: &host, v: host.create(4).expect("old tenant") };
    let slice = old.v.slice();
    let at = hostile::leave_pattern(&old, &mut c, MIB, false).expect("old tenant");
    // Removed, not just dropped: the interrupt thread may hold a reference for a moment, and
    // the next creation would then find the slice still taken and get another one.
    old.remove();
    let new = Mediated { host: &host, v: host.create(4).expect("new tenant") };
    assert_eq!(new.v.slice(), slice, "the new tenant has the old one's slice");
    let mut control = Checks::default();
    let found = hostile::leftover(&new, &mut control, MIB, Some(at)).expect("new tenant");
    assert_eq!(found, words, "without scrubbing the new tenant reads all the old tenant's words");
    assert_eq!(control.failed, 1, "the leftover check fails on the leak");
    host.set_scrub(true);
    new.remove();

    // Removal: the slice is zero once the old tenant is gone, before anyone is created on it.
    let log0 = host.scrub_log();
    let old = Mediated { host: &host, v: host.create(4).expect("old tenant") };
    assert_eq!(old.v.slice(), slice, "the tenant has the removed one's slice");
    let at = hostile::leave_pattern(&old, &mut c, MIB, false).expect("old tenant");
    let host_at = slice.vram_base + at;
    assert_eq!(vram_words(&host, host_at, MIB << 20, hostile::PATTERN), words, "the pattern is in VRAM");
    old.remove();
    assert_eq!(vram_words(&host, host_at, MIB << 20, 0), words, "removal scrubbed the old tenant's buffer");
    assert_eq!(vram_words(&host, slice.vram_base, slice.vram_size, 0), slice.vram_size as usize / 4, "removal scrubbed the whole slice");

    // Creation: whatever a slice holds (here planted straight into VRAM, as a failed removal
    // scrub or an earlier owner of the GPU would leave it) is gone before the tenant runs.
    let planted: Vec<u8> = (0..words).flat_map(|_| hostile::PATTERN.to_le_bytes()).collect();
    assert!(host.gpu().vram().write(host_at, &planted));
    let new = Mediated { host: &host, v: host.create(4).expect("new tenant") };
    assert_eq!(new.v.slice(), slice);
    assert_eq!(hostile::leftover(&new, &mut c, MIB, Some(at)).expect("new tenant"), 0, "creation scrubbed the slice");

    // VFIO reset under a running driver: the next user of the same vGPU finds nothing.
    let at = hostile::leave_pattern(&new, &mut c, MIB, true).expect("tenant before the reset");
    assert_eq!(vram_words(&host, slice.vram_base + at, MIB << 20, hostile::PATTERN), 0, "reset scrubbed the buffer");
    assert_eq!(hostile::leftover(&new, &mut c, MIB, Some(at)).expect("user after the reset"), 0);
    let log = host.scrub_log();
    assert_eq!(log.scrubs - log0.scrubs, 4, "create, remove, create, reset: {log:?}");
    drop(new);

    held.verify(&mut c).expect("the neighbour's pattern");
    assert_eq!(neighbour.counter("faults").unwrap(), 0, "the neighbour saw no fault");
    assert_eq!(c.failed, 0, "{} checks failed", c.failed);
    assert!(c.passed >= 9, "{} checks ran", c.passed);
    let log = host.scrub_log();
    assert!(log.errors.is_empty(), "scrub errors {:?}", log.errors);
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
    println!(
        "{} scrubs of gpuvm-4 slices ({} MiB each): {} MiB in {:.1} ms, {} MiB/s",
        log.scrubs,
        slice.vram_size >> 20,
        log.total.bytes >> 20,
        log.total.ns as f64 / 1e6,
        log.total.mib_per_s()
    );
}

/// Model VRAM for the pointer test: more than 4 GiB, so that the gpuvm-4 slices lie below,
/// across (unit 4, 3104 MiB + 1520 MiB) and above (unit 6, from 4624 MiB) the 4 GiB line.
const BIG_VRAM_MIB: u64 = 6144;

/// Issue 11, whole pointers: on a GPU of more than 4 GiB, the attacker (whose slice straddles
/// 4 GiB) rewrites its bound channel's USERD a word at a time: to a page whose host address
/// needs a carry into the high word, chosen so that a carry-less, word-by-word translation
/// would land on the pattern holder's buffer (the lowest slice, 4 GiB below), and to values
/// outside its partition. After every word the host's shadow USERD is the last whole valid
/// value (read from the model's VRAM), and the channel keeps working on that page. The
/// pattern is intact, the victim (a slice above 4 GiB) runs checked workloads throughout, and
/// an idle neighbour sees nothing.
#[test]
fn mediated_hostile_pointers() {
    const FOUR_GIB: u64 = 1 << 32;
    let host = MediatedHost::new(BIG_VRAM_MIB).expect("host bring-up");
    let holder = Mediated { host: &host, v: host.create(4).expect("pattern holder") };
    let idle = Mediated { host: &host, v: host.create(4).expect("idle neighbour") };
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let (a, vs) = (attacker.v.slice(), victim.slice());
    assert!(a.vram_base < FOUR_GIB && a.vram_base + a.vram_size > FOUR_GIB, "the attacker straddles 4 GiB: {a:?}");
    assert!(vs.vram_base >= FOUR_GIB, "the victim lies above 4 GiB: {vs:?}");
    let mut c = Checks::default();
    let p = PatternHolder::fill(&holder, &mut c, 16).expect("fill the pattern");
    // The holder's buffer (+1 MiB) in host VRAM, and the attacker's page 4 GiB above it.
    let carry_less = holder.v.slice().vram_base + p.vram() + (1 << 20);
    let cross = carry_less + FOUR_GIB - a.vram_base;
    assert!(cross + 0x1000 <= a.vram_size);
    let stop = AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        let t = s.spawn(|| victim_runs(&host, &victim, &stop));
        hostile::pointers(&attacker, &mut c, cross).expect("attack ran");
        stop.store(true, Ordering::Relaxed);
        t.join().expect("victim thread")
    });
    p.verify(&mut c).expect("verify the pattern");
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 25, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
    for (who, t) in [("holder", &holder), ("idle neighbour", &idle), ("attacker", &attacker)] {
        assert_eq!(t.counter("faults").unwrap(), 0, "{who}: no MMU fault");
    }
    assert_eq!(victim.stats().faults, 0, "victim: no MMU fault");
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
}

/// Issue 11, bounded resources: the attacker (gpuvm-8, 1/8 of the host pool) binds channels
/// on address spaces whose shadows need far more than its quota while the victim (gpuvm-4)
/// runs checked workloads. It holds at most its quota and all but the last 4 KiB of it; it
/// sees a CHAN_TABLE_ERROR for the channel that no longer fits and an MMU fault of its own
/// channel on a page table added once the quota is spent; the victim's results are correct
/// and it keeps running (its time per run during the attack is printed next to its time per
/// run alone); once the attacker closes, the host pool is back where it was.
#[test]
fn mediated_hostile_exhaustion() {
    use std::time::{Duration, Instant};
    // The guest driver wants at least 68 MiB: a gpuvm-8 of a 1 GiB GPU has 120.
    let host = MediatedHost::new(1024).expect("host bring-up");
    let pool0 = host.pool_free_bytes();
    let attacker = Mediated { host: &host, v: host.create(8).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let quota = pool0 * u64::from(attacker.v.slice().units) / u64::from(gpuvm_guest_driver::transport::mediated::GPU_UNITS);
    let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(&victim)?)) };
    let run = || {
        let t = Instant::now();
        for name in ["mmul", "hotspot"] {
            let r = workloads::run(name, &open, &Opts { size: Size::Small, ..Opts::default() });
            assert!(r.ok, "victim {name}: {}", r.to_json());
        }
        t.elapsed()
    };
    let alone: Vec<Duration> = (0..2).map(|_| run()).collect();
    let mut c = Checks::default();
    let stop = AtomicBool::new(false);
    let (during, attack) = std::thread::scope(|s| {
        let t = s.spawn(|| {
            let mut d = Vec::new();
            while !stop.load(Ordering::Relaxed) || d.is_empty() {
                d.push(run());
            }
            d
        });
        // The victim stops after its current run however the attack ends (a failed one too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stopper = Stop(&stop);
        let t0 = Instant::now();
        hostile::exhaust(&attacker, &mut c, |c| {
            let used = attacker.v.pool_used();
            c.check(used <= quota && used + 0x1000 > quota, format!("the attacker holds {} KiB of its {} KiB quota", used >> 10, quota >> 10));
            let free = host.pool_free_bytes();
            c.check(free + used <= pool0, format!("the host pool has {} KiB free of {} KiB", free >> 10, pool0 >> 10));
            Ok(())
        })
        .expect("attack ran");
        let attack = t0.elapsed();
        drop(stopper);
        (t.join().expect("victim thread"), attack)
    });
    let mean = |d: &[Duration]| d.iter().sum::<Duration>() / d.len() as u32;
    println!(
        "victim (mmul + hotspot): {:.0?} per run alone, {:.0?} per run during the attack ({} runs; the attack took {attack:.1?})",
        mean(&alone),
        mean(&during),
        during.len()
    );
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 6, "{} checks ran", c.passed);
    assert_eq!(victim.stats().faults, 0, "the victim saw no fault");
    assert_eq!(victim.counters().denied.load(Ordering::Relaxed), 0);
    assert_eq!(attacker.v.pool_used(), 0, "the attacker holds nothing once closed");
    assert_eq!(host.pool_free_bytes(), pool0, "the host pool is back where it was");
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
}

/// Time per checked victim run with nothing else on the GPU (`rounds` rounds of mmul +
/// hotspot).
fn victim_alone(host: &MediatedHost, victim: &Arc<VgpuShared>, rounds: u32) -> Duration {
    let stop = AtomicBool::new(true);
    let start = Instant::now();
    let mut runs = 0;
    for _ in 0..rounds {
        runs += victim_runs(host, victim, &stop);
    }
    start.elapsed() / runs
}

/// Runaway work (issue 11 item 6): an attacker's endless copy holds PCOPY0 and cannot be
/// preempted. The watchdog (default limit, 2 s) stops it: the attacker's channel is
/// evicted by resetting PCOPY0, the attacker alone sees SCHED_ERROR CTXSW_TIMEOUT, and a
/// victim running checked workloads meanwhile completes every run correctly (its time per
/// run during the attack against alone is printed).
#[test]
fn mediated_hostile_runaway() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let alone = victim_alone(&host, &victim, 2);
    let stop = AtomicBool::new(false);
    let mut c = Checks::default();
    let start = Instant::now();
    let (took, runs) = std::thread::scope(|s| {
        let t = s.spawn(|| victim_runs(&host, &victim, &stop));
        let took = hostile::runaway(&attacker, &mut c).expect("attack ran");
        stop.store(true, Ordering::Relaxed);
        (took, t.join().expect("victim thread"))
    });
    let during = start.elapsed() / runs;
    eprintln!(
        "runaway: stopped {took:?} after its first write (watchdog {} ms); victim {runs} runs, {during:?} per run during vs {alone:?} alone",
        gpuvm_shadow::watchdog::WATCHDOG_MS_DEFAULT
    );
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    let kills = host.watchdog_kills();
    assert_eq!(kills.len(), 1, "one channel stopped: {kills:?}");
    let k = kills[0];
    assert_eq!(k.vgpu, attacker.v.slice().first_unit, "the attacker's");
    assert_eq!(k.runaway.engine, pfifo::ENGINE_PCOPY0);
    assert_eq!(attacker.v.slice().channel_from_host(k.runaway.host_chid), Some(0));
    assert_eq!(k.evicted, Ok(host_gpu::Evicted::EngineReset(pfifo::ENGINE_PCOPY0)), "the kick could not take it off: the engine was reset");
    assert_eq!(attacker.v.stats().killed, 1);
    assert_eq!(victim.stats().killed, 0);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
}

/// Teardown under endless work (issue 11 item 3): the attacker's endless copy into its own
/// system-memory page, then an unbind, a VFIO reset, PFIFO off in its PMC_ENABLE, an unmap of
/// the page or a close:
/// each stops the channel (an engine reset, as the kick cannot) before it returns, and the
/// page stays unwritten afterwards; a victim runs checked workloads throughout.
#[test]
fn mediated_hostile_teardown() {
    let (c, runs) = under_attack(|host, a, c| {
        for how in [hostile::Teardown::Unbind, hostile::Teardown::Reset, hostile::Teardown::PfifoOff] {
            let resets = host.engine_resets().len();
            hostile::teardown(a, c, how).expect("attack ran");
            assert_eq!(host.engine_resets().len(), resets + 1, "{how:?}: the engine held by the copy was reset");
        }
        // Unmap, then close at once, three times: the fault the copy then takes on the
        // attacker's channel may still be unread when the attacker's shadow instance block is
        // freed and the victim (rebinding for every run) gets that block; it must not be
        // blamed on the victim (whose runs must all stay correct). Before records were matched
        // by host channel as well as instance block, the victim's run failed with the
        // attacker's PCOPY0 fault.
        for _ in 0..3 {
            let (mut g, _src, dst, _) = hostile::start_endless(a).expect("endless copy");
            g.raw_hw().transport().dma_free(dst.buf);
            drop(g);
        }
        // Unmap (VFIO's DMA unmap, straight from the transport): the shadow stops pointing at
        // the page and the host TLB is flushed, so the copy's next chunk faults on the
        // attacker's own channel; every channel is taken off the engines before the page is
        // unpinned, and PCOPY0 is never seen on the attacker's channel again.
        let (mut g, _src, dst, _) = hostile::start_endless(a).expect("endless copy");
        g.raw_hw().transport().dma_free(dst.buf);
        let start = Instant::now();
        let mut intr = 0;
        while intr & pfifo::INTR_VM_FAULT == 0 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
            intr = g.raw_hw().rd(pfifo::INTR);
        }
        c.check(intr & pfifo::INTR_VM_FAULT != 0, format!("unmap: the copy faulted on the attacker's own channel (PFIFO INTR {intr:#x})"));
        let host_chid = a.v.slice().channel_to_host(0).expect("channel 0");
        let on_ce0 = || {
            let s = pfifo::EngState::from_raw(host.gpu().bar_read32(gf100_model::Bar::Bar0, u64::from(pfifo::EngState::offset(pfifo::ENGINE_PCOPY0))));
            s.busy() && s.chid() == host_chid
        };
        let seen = (0..30).filter(|_| { std::thread::sleep(Duration::from_millis(10)); on_ce0() }).count();
        c.check(seen == 0, format!("unmap: PCOPY0 never seen on the attacker's channel after the unmap ({seen} of 30 looks)"));
        drop(g);
        // Close: the device goes (its pages with it) only after the channel was stopped.
        let resets = host.engine_resets().len();
        let (g, _src, _dst, _) = hostile::start_endless(a).expect("endless copy");
        drop(g);
        assert_eq!(host.engine_resets().len(), resets + 1, "close: the engine held by the copy was reset");
        // The victim may use PCOPY0; the attacker's channel must never be seen on it again.
        let seen = (0..30).filter(|_| { std::thread::sleep(Duration::from_millis(10)); on_ce0() }).count();
        c.check(seen == 0, format!("close: PCOPY0 never seen on the closed vGPU's channel again ({seen} of 30 looks)"));
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 6, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
}

/// Control for `mediated_hostile_runaway`: with the watchdog at its longest limit (60 s) the
/// same endless copy keeps PCOPY0 and a victim's run that needs it makes no progress for
/// 5 s (the attack the watchdog is there for); closing the attacker then evicts its channel
/// (an engine reset) and the victim's run completes correctly.
#[test]
fn mediated_hostile_runaway_without_the_watchdog() {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    host.set_watchdog_ms(gpuvm_shadow::watchdog::WATCHDOG_MS_MAX).expect("longest limit");
    assert!(host.set_watchdog_ms(gpuvm_shadow::watchdog::WATCHDOG_MS_MIN - 1).is_err(), "below the range is refused");
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let (g, _src, _dst, _) = hostile::start_endless(&attacker).expect("endless copy");
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(&victim)?)) };
            let r = workloads::run("mmul", &open, &Opts { size: Size::Small, ..Opts::default() });
            done.store(true, Ordering::Relaxed);
            r
        });
        std::thread::sleep(Duration::from_secs(5));
        assert!(!done.load(Ordering::Relaxed), "the victim's run completed while the endless copy held the copy engine");
        assert!(host.watchdog_kills().is_empty());
        drop(g);
        let r = t.join().expect("victim thread");
        assert!(r.ok, "victim after the attacker closed: {}", r.to_json());
    });
    assert_eq!(host.engine_resets().len(), 1, "the close reset the engine: {:?}", host.engine_resets());
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
}
