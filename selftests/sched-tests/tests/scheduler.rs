//! The scheduler's bookkeeping and its checks, event by event, without the simulator.
use gpuvm_sched_tests::sched::account::{Removed, SchedError, Submitted, VgpuId, MAX_VGPUS, QUEUE_DEPTH};
use gpuvm_sched_tests::sched::knobs::{BandWait, Knobs, Period, PolicyKind, Weight};
use gpuvm_sched_tests::sched::policy::Decision;
use gpuvm_sched_tests::sched::scheduler::Scheduler;

const MS: u64 = 1_000_000;

fn v(i: usize) -> VgpuId {
    VgpuId::new(i).unwrap()
}

fn sched(kind: PolicyKind, n: usize) -> Scheduler {
    let mut s = Scheduler::new(kind, Knobs::default(), 0);
    for i in 0..n {
        s.add(v(i), Weight::DEFAULT, 0).unwrap();
    }
    s
}

#[test]
fn slots_are_bounded() {
    assert_eq!(MAX_VGPUS, 8);
    assert!(VgpuId::new(MAX_VGPUS - 1).is_some());
    assert!(VgpuId::new(MAX_VGPUS).is_none());
    assert_eq!(VgpuId::all().count(), MAX_VGPUS);
}

#[test]
fn events_that_do_not_fit_are_refused() {
    for kind in PolicyKind::ALL {
        let mut s = sched(kind, 1);
        assert_eq!(s.add(v(0), Weight::DEFAULT, 0), Err(SchedError::Exists));
        assert_eq!(s.submit(v(1), 0), Err(SchedError::Absent));
        assert_eq!(s.set_weight(v(1), Weight::DEFAULT, 0), Err(SchedError::Absent));
        assert_eq!(s.remove(v(1), 0), Err(SchedError::Absent));
        assert_eq!(s.complete(v(0), 1, 0), Err(SchedError::NotRunning));
        assert_eq!(s.complete(v(1), 1, 0), Err(SchedError::Absent));
        assert_eq!(s.pick(0), Decision::Idle);
        assert_eq!(s.submit(v(0), 0), Ok(Submitted::Queued));
        assert_eq!(s.pick(1), Decision::Run(v(0)));
        assert_eq!(s.pick(2), Decision::Busy, "one submission at a time");
        assert_eq!(s.complete(v(0), MS, 3), Ok(()));
        assert_eq!(s.complete(v(0), MS, 3), Err(SchedError::NotRunning));
        let st = s.stats(v(0)).unwrap();
        assert_eq!((st.submissions, st.dispatched, st.completed, st.queued), (1, 1, 1, 0));
        assert_eq!((st.gpu_time_ns, st.wait_time_ns, st.max_wait_ns), (MS, 1, 1));
    }
}

#[test]
fn a_full_queue_merges_doorbells() {
    let mut s = sched(PolicyKind::Fifo, 1);
    for _ in 0..QUEUE_DEPTH {
        assert_eq!(s.submit(v(0), 0), Ok(Submitted::Queued));
    }
    assert_eq!(s.submit(v(0), 0), Ok(Submitted::Merged));
    assert_eq!(s.submit(v(0), 0), Ok(Submitted::Merged));
    let st = s.stats(v(0)).unwrap();
    assert_eq!((st.submissions, st.merged, st.queued), (QUEUE_DEPTH as u64 + 2, 2, QUEUE_DEPTH as u32));
    assert_eq!(s.pick(0), Decision::Run(v(0)));
    assert_eq!(s.submit(v(0), 0), Ok(Submitted::Queued), "dispatching made room");
}

#[test]
fn removal_drops_queued_work_and_forgets_the_running_submission() {
    for kind in PolicyKind::ALL {
        let mut s = sched(kind, 2);
        for _ in 0..3 {
            s.submit(v(0), 0).unwrap();
        }
        s.submit(v(1), 0).unwrap();
        assert_eq!(s.pick(0), Decision::Run(v(0)));
        assert_eq!(s.remove(v(0), 1), Ok(Removed { dropped: 2, was_running: true }));
        assert_eq!(s.complete(v(0), MS, 2), Err(SchedError::Absent), "a late completion is refused");
        assert_eq!(s.pick(2), Decision::Run(v(1)), "the GPU is free for the others");
        // The slot can be reused, from nothing.
        s.add(v(0), Weight::new(50).unwrap(), 3).unwrap();
        assert_eq!(s.stats(v(0)).unwrap().submissions, 0);
    }
}

#[test]
fn band_without_a_wait_is_work_conserving() {
    // BAND may only wait; and only up to band_wait: with the wait at 0 it never does.
    let knobs = Knobs { band_wait: BandWait::from_us(0).unwrap(), ..Knobs::default() };
    let mut s = Scheduler::new(PolicyKind::Band, knobs, 0);
    s.add(v(0), Weight::DEFAULT, 0).unwrap();
    s.add(v(1), Weight::DEFAULT, 0).unwrap();
    let mut t = 0;
    for _ in 0..100 {
        s.submit(v(0), t).unwrap();
        match s.pick(t) {
            Decision::Run(x) => {
                t += if x == v(0) { 5 * MS } else { 100_000 };
                s.complete(x, if x == v(0) { 5 * MS } else { 100_000 }, t).unwrap();
                if x == v(1) {
                    s.submit(v(1), t + 50_000).unwrap();
                }
            }
            d => panic!("{d:?} while work is queued and the wait is 0"),
        }
    }
}

#[test]
fn period_change_clips_credit_to_the_new_cap() {
    let mut s = sched(PolicyKind::Credit, 2);
    // vGPU 0 rings rarely; vGPU 1 keeps the GPU busy. 0 banks up to the cap.
    let (mut t, mut light) = (0, 0);
    while t < 2_000 * MS {
        s.submit(v(1), t).unwrap();
        if t >= light {
            s.submit(v(0), t).unwrap();
            light += 100 * MS;
        }
        while let Decision::Run(x) = s.pick(t) {
            let len = if x == v(0) { 10_000 } else { MS };
            t += len;
            s.complete(x, len, t).unwrap();
        }
    }
    assert_eq!(s.credit_of(v(0)), Some(Period::DEFAULT.ns() as i64), "capped at one period");
    s.set_period(Period::from_us(5_000).unwrap(), t);
    assert_eq!(s.credit_of(v(0)), Some(5 * MS as i64));
    assert_eq!(s.knobs().period.us(), 5_000);
}

#[test]
fn switching_keeps_the_queues() {
    let mut s = sched(PolicyKind::Band, 3);
    for i in 0..3 {
        for _ in 0..=i {
            s.submit(v(i), 0).unwrap();
        }
    }
    assert_eq!(s.pick(0), Decision::Run(v(0)));
    s.set_policy(PolicyKind::Fifo, 1);
    assert_eq!(s.policy(), PolicyKind::Fifo);
    assert_eq!(s.credit_of(v(0)), None);
    s.complete(v(0), MS, 2).unwrap();
    let mut order = vec![];
    let mut t = 2;
    s.set_policy(PolicyKind::Credit, t);
    while let Decision::Run(x) = s.pick(t) {
        order.push(x.index());
        t += MS;
        s.complete(x, MS, t).unwrap();
    }
    order.sort();
    assert_eq!(order, [1, 1, 2, 2, 2], "everything queued before the switches ran once");
}

#[test]
fn the_scheduler_fits_a_small_allocation() {
    // One per GPU, kept in the GPU's state; no heap inside.
    let size = std::mem::size_of::<Scheduler>();
    println!("Scheduler: {size} bytes");
    assert!(size <= 4096, "{size} bytes");
}

/// What the kernel cannot have: std or alloc, floating point, panicking shortcuts.
#[test]
fn sched_sources_are_core_only() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sched");
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for (n, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for bad in ["std::", "alloc::", "kernel::", "f32", "f64", ".unwrap()", ".expect(", "panic!", "unreachable!", "unsafe"] {
                assert!(!code.contains(bad), "{}:{}: {bad}", path.display(), n + 1);
            }
        }
        files += 1;
    }
    assert_eq!(files, 8);
}
