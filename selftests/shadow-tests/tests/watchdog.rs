//! The runaway-work watchdog (shadow/watchdog.rs): work is reported exactly when an engine
//! stays on one channel without progress past the limit; progress, a channel switch or an
//! idle engine start the count again; the limit's range is enforced.
use gpuvm_shadow_tests::gf100::pfifo;
use gpuvm_shadow_tests::watchdog::{BadLimit, Runaway, Seen, Watchdog, ENGINES, WATCHDOG_MS_DEFAULT, WATCHDOG_MS_MAX, WATCHDOG_MS_MIN};

const MS: u64 = 1_000_000;

fn on(engine: usize, host_chid: u32, progress: u32) -> [Option<Seen>; ENGINES] {
    let mut s = [None; ENGINES];
    s[engine] = Some(Seen { host_chid, progress });
    s
}

#[test]
fn stuck_work_is_reported_once_after_the_limit() {
    let mut w = Watchdog::default();
    assert_eq!(w.limit_ms(), WATCHDOG_MS_DEFAULT);
    assert_eq!(w.period_ns(), 500 * MS);
    let ce0 = 1;
    let mut t = 0;
    while t <= 2000 * MS {
        assert_eq!(w.check(t, on(ce0, 7, 3)), [None; ENGINES], "at {t} ns the limit is not passed yet");
        t += 500 * MS;
    }
    let r = w.check(2001 * MS, on(ce0, 7, 3));
    assert_eq!(r[ce0], Some(Runaway { engine: pfifo::ENGINE_PCOPY0, host_chid: 7, held_ns: 2001 * MS }));
    assert_eq!(r.iter().filter(|x| x.is_some()).count(), 1);
    // Reported once: seen afresh from here.
    assert_eq!(w.check(2002 * MS, on(ce0, 7, 3)), [None; ENGINES]);
    assert_eq!(w.check(4002 * MS, on(ce0, 7, 3))[ce0].map(|r| r.held_ns), None);
    assert!(w.check(4003 * MS, on(ce0, 7, 3))[ce0].is_some());
}

#[test]
fn progress_switches_and_idle_restart_the_count() {
    let mut w = Watchdog::default();
    let gr = 0;
    // Many entries in a row (GP_GET moves): never stopped, however long the engine is busy.
    for i in 0..100u32 {
        assert_eq!(w.check(u64::from(i) * 500 * MS, on(gr, 5, i)), [None; ENGINES]);
    }
    // Another channel on the engine, then idle, then the first again: each restarts.
    let mut w = Watchdog::default();
    assert_eq!(w.check(0, on(gr, 5, 1)), [None; ENGINES]);
    assert_eq!(w.check(1900 * MS, on(gr, 6, 1)), [None; ENGINES]);
    assert_eq!(w.check(3800 * MS, [None; ENGINES]), [None; ENGINES]);
    assert_eq!(w.check(3900 * MS, on(gr, 5, 1)), [None; ENGINES]);
    assert_eq!(w.check(5800 * MS, on(gr, 5, 1)), [None; ENGINES]);
    assert!(w.check(5901 * MS, on(gr, 5, 1))[gr].is_some());
    // Engines are tracked apart: a stuck PCOPY1 is found while PGRAPH progresses.
    let mut w = Watchdog::default();
    let ce1 = 2;
    let both = |p| {
        let mut s = on(ce1, 9, 0);
        s[gr] = Some(Seen { host_chid: 5, progress: p });
        s
    };
    assert_eq!(w.check(0, both(0)), [None; ENGINES]);
    let r = w.check(2500 * MS, both(1));
    assert_eq!(r[gr], None);
    assert_eq!(r[ce1].map(|r| (r.engine, r.host_chid)), Some((pfifo::ENGINE_PCOPY1, 9)));
}

#[test]
fn the_limit_has_a_range() {
    let mut w = Watchdog::default();
    assert_eq!(w.set_limit_ms(WATCHDOG_MS_MIN - 1), Err(BadLimit));
    assert_eq!(w.set_limit_ms(WATCHDOG_MS_MAX + 1), Err(BadLimit));
    assert_eq!(w.set_limit_ms(0), Err(BadLimit));
    assert_eq!(w.limit_ms(), WATCHDOG_MS_DEFAULT, "a refused limit changes nothing");
    assert_eq!(w.set_limit_ms(WATCHDOG_MS_MIN), Ok(()));
    assert_eq!(w.check(0, on(0, 1, 1)), [None; ENGINES]);
    assert!(w.check(101 * MS, on(0, 1, 1))[0].is_some(), "the new limit applies");
    assert_eq!(w.set_limit_ms(WATCHDOG_MS_MAX), Ok(()));
    assert_eq!(w.limit_ms(), WATCHDOG_MS_MAX);
}
