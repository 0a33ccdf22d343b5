//! The per-GPU dispatcher (shadow/dispatch.rs) over a fake host GPU whose channels complete
//! when the test says so: what is forwarded when, what is charged, and that a hostile vGPU
//! (a channel it disables, work that never completes, doorbells on channels it does not own,
//! doorbell storms) never keeps another vGPU's queued work off the GPU.

use gpuvm_shadow_tests::dispatch::{DispatchHost, Dispatcher, Next, FALLBACK_NS, RUN_LIMIT_NS};
use gpuvm_shadow_tests::gf100::pfifo::{ChanInst, ChanState};
use gpuvm_shadow_tests::sched::account::VgpuId;
use gpuvm_shadow_tests::sched::knobs::{Knobs, PolicyKind, Weight};

#[derive(Clone, Copy, Default)]
struct Chan {
    put: u32,
    get: u32,
    disabled: bool,
    pending: bool,
    acquiring: bool,
    unlisted: bool,
}

/// Host channels whose GP_GET the test moves; every forward recorded.
struct Fake {
    ch: [Chan; 128],
    forwards: Vec<(u32, u32)>,
}

impl Fake {
    fn new() -> Self {
        Self { ch: [Chan::default(); 128], forwards: Vec::new() }
    }
    /// The GPU finished what channel `c` was given.
    fn finish(&mut self, c: u32) {
        let ch = &mut self.ch[c as usize];
        ch.get = ch.put;
    }
    fn take(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.forwards)
    }
}

impl DispatchHost for Fake {
    fn forward(&mut self, c: u32, put: u32) {
        self.ch[c as usize].put = put;
        self.forwards.push((c, put));
    }
    fn gp_get(&self, c: u32) -> u32 {
        self.ch[c as usize].get
    }
    fn gp_put(&self, c: u32) -> u32 {
        self.ch[c as usize].put
    }
    fn chan(&self, c: u32) -> (ChanInst, ChanState) {
        let ch = self.ch[c as usize];
        (ChanInst::bound(0x1000), ChanState::INITIAL.with_runnable(!ch.disabled).with_pending(ch.pending).with_acquire_pending(ch.acquiring))
    }
    fn listed(&self, c: u32) -> bool {
        !self.ch[c as usize].unlisted
    }
}

fn v(i: usize) -> VgpuId {
    VgpuId::new(i).unwrap()
}

fn dispatcher(kind: PolicyKind, n: usize) -> Dispatcher {
    let mut d = Dispatcher::new(kind, Knobs::default(), 0);
    for i in 0..n {
        d.add(v(i), Weight::DEFAULT, 0).unwrap();
    }
    d
}

const MS: u64 = 1_000_000;

/// Host channel of vGPU i (channels 16 i .. 16 i + 15).
fn hc(i: usize, k: u32) -> u32 {
    16 * i as u32 + k
}

#[test]
fn one_submission_runs_at_a_time_and_is_charged_dispatch_to_completion() {
    for kind in PolicyKind::ALL {
        let mut h = Fake::new();
        let mut d = dispatcher(kind, 2);
        assert_eq!(d.submit(&mut h, v(0), hc(0, 0), 1, 0), Next::At(FALLBACK_NS), "{kind:?}: the fallback timer is armed");
        assert_eq!(h.take(), [(hc(0, 0), 1)], "{kind:?}: an idle GPU gets the doorbell at once");
        d.submit(&mut h, v(1), hc(1, 0), 4, MS);
        assert!(h.take().is_empty(), "{kind:?}: the other vGPU waits");
        d.poll(&mut h, 2 * MS);
        assert!(h.take().is_empty(), "{kind:?}: not complete: GP_GET did not reach GP_PUT");
        h.finish(hc(0, 0));
        h.ch[hc(0, 0) as usize].pending = true;
        d.poll(&mut h, 3 * MS);
        assert!(h.take().is_empty(), "{kind:?}: PFIFO still has the channel pending");
        h.ch[hc(0, 0) as usize].pending = false;
        d.poll(&mut h, 5 * MS);
        assert_eq!(h.take(), [(hc(1, 0), 4)], "{kind:?}: at completion the next one is forwarded");
        let (s0, _) = d.stats(v(0)).unwrap();
        assert_eq!(s0.gpu_time_ns, 5 * MS, "{kind:?}");
        let (s1, _) = d.stats(v(1)).unwrap();
        assert_eq!(s1.wait_time_ns, 4 * MS, "{kind:?}");
        h.finish(hc(1, 0));
        assert_eq!(d.poll(&mut h, 6 * MS), Next::Idle);
        assert_eq!(d.stats(v(1)).unwrap().0.gpu_time_ns, MS);
        assert_eq!(d.running(), None);
    }
}

#[test]
fn doorbells_of_the_running_vgpu_are_merged_into_its_submission() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Credit, 2);
    d.submit(&mut h, v(0), hc(0, 0), 1, 0);
    d.submit(&mut h, v(0), hc(0, 0), 2, 20);
    d.submit(&mut h, v(0), hc(0, 1), 7, 30);
    assert_eq!(h.take(), [(hc(0, 0), 1), (hc(0, 0), 2), (hc(0, 1), 7)], "alone: forwarded at once");
    // Once another vGPU waits, the running one's doorbells queue behind it.
    d.submit(&mut h, v(1), hc(1, 0), 1, 40);
    d.submit(&mut h, v(0), hc(0, 0), 3, 50);
    assert!(h.take().is_empty());
    let (_, ds) = d.stats(v(0)).unwrap();
    assert_eq!(ds.merged_running, 2);
    // Complete only when both channels are done.
    h.finish(hc(0, 0));
    d.poll(&mut h, MS);
    assert!(h.take().is_empty());
    h.finish(hc(0, 1));
    d.poll(&mut h, MS);
    assert_eq!(h.take(), [(hc(1, 0), 1)]);
    // Past the merge window (period / 8), a doorbell of the running vGPU queues even alone.
    h.finish(hc(1, 0));
    d.poll(&mut h, 2 * MS);
    assert_eq!(h.take(), [(hc(0, 0), 3)]);
    d.submit(&mut h, v(0), hc(0, 0), 4, 10 * MS);
    assert!(h.take().is_empty(), "queued behind its own running submission");
}

#[test]
fn queued_doorbells_go_in_order_and_a_full_queue_merges() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Fifo, 2);
    d.submit(&mut h, v(1), hc(1, 0), 1, 0);
    h.take();
    // vGPU 0 rings 20 times on two channels while vGPU 1 runs: 16 queue, the rest merge.
    for k in 0..20u32 {
        d.submit(&mut h, v(0), hc(0, k % 2), k + 1, 10 + u64::from(k));
    }
    assert!(h.take().is_empty());
    let mut seen = Vec::new();
    let mut t = MS;
    for _ in 0..40 {
        for c in 0..128 {
            h.finish(c);
        }
        d.poll(&mut h, t);
        t += MS;
        seen.extend(h.take());
    }
    // Each channel's GP_PUT only moves forward along what the guest rang.
    for c in [hc(0, 0), hc(0, 1)] {
        let puts: Vec<u32> = seen.iter().filter(|x| x.0 == c).map(|x| x.1).collect();
        assert!(puts.windows(2).all(|w| w[0] < w[1]), "{c}: {puts:?}");
        assert_eq!(puts.last(), Some(&if c == hc(0, 0) { 19 } else { 20 }), "{c}: the newest GP_PUT is reached: {puts:?}");
    }
    let (s, ds) = d.stats(v(0)).unwrap();
    assert_eq!(s.submissions, 20);
    assert_eq!(s.merged, 4);
    assert_eq!(s.queued, 0);
    assert!(ds.empty <= 1, "{ds:?}");
}

/// Hostile: a vGPU disables its running channel, or its work never completes (a semaphore
/// acquire nobody releases), or it rings channels of another vGPU, or storms doorbells:
/// the victim's queued work still reaches the GPU, within the run limit at worst.
#[test]
fn a_hostile_vgpu_cannot_hold_the_gpu() {
    for kind in PolicyKind::ALL {
        let mut h = Fake::new();
        let mut d = dispatcher(kind, 2);
        // Disabled mid-flight: complete at the next look.
        d.submit(&mut h, v(0), hc(0, 0), 1, 0);
        d.submit(&mut h, v(1), hc(1, 0), 1, 10);
        h.take();
        h.ch[hc(0, 0) as usize].disabled = true;
        d.poll(&mut h, MS);
        assert_eq!(h.take(), [(hc(1, 0), 1)], "{kind:?}: a channel that cannot progress frees the GPU");
        h.finish(hc(1, 0));
        d.poll(&mut h, 2 * MS);
        h.ch[hc(0, 0) as usize].disabled = false;
        // Never completes: given up on after the run limit, the victim runs.
        let t0 = 10 * MS;
        d.submit(&mut h, v(0), hc(0, 0), 2, t0);
        d.submit(&mut h, v(1), hc(1, 0), 2, t0 + 10);
        assert_eq!(h.take(), [(hc(0, 0), 2)], "{kind:?}");
        let mut t = t0;
        let mut victim_at = None;
        while t < t0 + 2 * RUN_LIMIT_NS {
            // A doorbell storm of the attacker on its own channel and on the victim's.
            for k in 0..8 {
                d.submit(&mut h, v(0), hc(0, 0), 2 + k % 3, t);
                d.submit(&mut h, v(0), hc(1, 0), 5, t);
            }
            if let Next::At(n) = d.poll(&mut h, t) {
                assert!(n > t, "{kind:?}: the next look is in the future");
            }
            if h.take().iter().any(|x| x.0 == hc(1, 0)) {
                victim_at = Some(t);
                break;
            }
            t += MS;
        }
        let at = victim_at.unwrap_or_else(|| panic!("{kind:?}: the victim never got the GPU"));
        assert!(at - t0 <= RUN_LIMIT_NS + MS, "{kind:?}: victim waited {} ms", (at - t0) / MS);
        assert!(!h.forwards.iter().any(|x| x.0 == hc(1, 0) && x.1 == 5), "{kind:?}: the attacker never rang the victim's channel");
        let (_, ds) = d.stats(v(0)).unwrap();
        assert!(ds.given_up >= 1 && ds.refused >= 8, "{kind:?}: {ds:?}");
    }
}

#[test]
fn removing_the_running_vgpu_frees_the_gpu_for_the_others() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Band, 3);
    d.submit(&mut h, v(0), hc(0, 0), 1, 0);
    d.submit(&mut h, v(1), hc(1, 0), 1, 10);
    d.submit(&mut h, v(2), hc(2, 0), 1, 20);
    h.take();
    d.remove(&mut h, v(0), MS);
    let first = h.take();
    assert_eq!(first.len(), 1, "{first:?}");
    let c = first[0].0;
    h.finish(c);
    d.poll(&mut h, 2 * MS);
    let second = h.take();
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].0, c);
    assert!([hc(1, 0), hc(2, 0)].contains(&second[0].0));
    // The removed vGPU's doorbells are refused until it is added again.
    h.finish(second[0].0);
    d.poll(&mut h, 3 * MS);
    d.submit(&mut h, v(0), hc(0, 0), 2, 4 * MS);
    assert!(h.take().is_empty());
    d.add(v(0), Weight::DEFAULT, 5 * MS).unwrap();
    d.submit(&mut h, v(0), hc(0, 0), 2, 6 * MS);
    assert_eq!(h.take(), [(hc(0, 0), 2)]);
}

#[test]
fn a_policy_switch_keeps_queued_work() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Fifo, 3);
    for i in 0..3 {
        d.submit(&mut h, v(i), hc(i, 0), 1, i as u64);
    }
    h.take();
    d.set_policy(&mut h, PolicyKind::Band, 10);
    d.set_policy(&mut h, PolicyKind::Credit, 20);
    let mut got = Vec::new();
    for t in 1..10 {
        for c in 0..128 {
            h.finish(c);
        }
        d.poll(&mut h, t * MS);
        got.extend(h.take());
    }
    got.sort();
    assert_eq!(got, [(hc(1, 0), 1), (hc(2, 0), 1)]);
}

/// A GP_PUT merged into the running submission covers the same channel's older queued ones:
/// they are never forwarded after it (GP_PUT going back would make PFIFO run the whole ring
/// around again, stale entries included; found by the mediated backlog tests).
#[test]
fn gp_put_never_goes_back() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Fifo, 2);
    d.submit(&mut h, v(1), hc(1, 0), 1, 0);
    d.submit(&mut h, v(0), hc(0, 0), 1, 10);
    d.submit(&mut h, v(0), hc(0, 0), 2, 20);
    assert_eq!(h.take(), [(hc(1, 0), 1)]);
    h.finish(hc(1, 0));
    d.poll(&mut h, MS);
    assert_eq!(h.take(), [(hc(0, 0), 1)]);
    d.submit(&mut h, v(0), hc(0, 0), 3, MS + 10);
    assert_eq!(h.take(), [(hc(0, 0), 3)], "merged into the running submission");
    for t in 2..6 {
        h.finish(hc(0, 0));
        d.poll(&mut h, t * MS);
    }
    assert!(h.take().is_empty(), "GP_PUT 2 is never forwarded after 3");
    assert_eq!(d.running(), None);
}

/// A channel off the runlist or blocked on a semaphore acquire cannot progress: the GPU goes
/// to the next vGPU at the next look instead of idling until the run limit.
#[test]
fn a_channel_that_cannot_progress_frees_the_gpu_at_once() {
    for blocked in [|c: &mut Chan| c.unlisted = true, |c: &mut Chan| c.acquiring = true] {
        let mut h = Fake::new();
        let mut d = dispatcher(PolicyKind::Band, 2);
        d.submit(&mut h, v(0), hc(0, 0), 1, 0);
        d.submit(&mut h, v(1), hc(1, 0), 1, 10);
        h.take();
        d.poll(&mut h, MS);
        assert!(h.take().is_empty());
        blocked(&mut h.ch[hc(0, 0) as usize]);
        d.poll(&mut h, 2 * MS);
        assert_eq!(h.take(), [(hc(1, 0), 1)]);
        assert_eq!(d.stats(v(0)).unwrap().1.given_up, 0);
    }
}

/// The run limit counts from the last progress: a run that completes GPFIFO entries one by
/// one (doorbells merged into it) is not given up on however long it lasts, while a run
/// whose GP_GET stands still is, one limit after it last moved.
#[test]
fn the_run_limit_counts_from_the_last_progress() {
    let mut h = Fake::new();
    let mut d = dispatcher(PolicyKind::Credit, 2);
    for put in 1..=20 {
        d.submit(&mut h, v(0), hc(0, 0), put, u64::from(put) * 10);
    }
    assert_eq!(h.take().len(), 20, "merged into one run");
    d.submit(&mut h, v(1), hc(1, 0), 1, MS);
    // One entry every 20 ms: 20 entries take 400 ms, over three run limits.
    let mut t = MS;
    for get in 1..20 {
        t += 20 * MS;
        h.ch[hc(0, 0) as usize].get = get;
        d.poll(&mut h, t);
        assert!(h.take().is_empty(), "entry {get} at {} ms: still running, not given up", t / MS);
    }
    assert_eq!(d.stats(v(0)).unwrap().1.given_up, 0);
    // Then it stalls one entry short: given up one limit after its last progress, not before.
    d.poll(&mut h, t + RUN_LIMIT_NS - MS);
    assert!(h.take().is_empty(), "stalled for less than the limit");
    d.poll(&mut h, t + RUN_LIMIT_NS);
    assert_eq!(h.take(), [(hc(1, 0), 1)], "stalled for the limit: the other vGPU runs");
    assert_eq!(d.stats(v(0)).unwrap().1.given_up, 1);
}
