//! The sysfs knobs: what is accepted, what is refused (all of it EINVAL in the kernel).
use gpuvm_sched_tests::sched::knobs::{BandWait, KnobError, Knobs, Period, PolicyKind, Weight, NS_PER_US};

#[test]
fn policy_names_round_trip_and_tolerate_the_newline() {
    for k in PolicyKind::ALL {
        assert_eq!(PolicyKind::parse(k.name().as_bytes()), Ok(k));
    }
    assert_eq!(PolicyKind::parse(b"band\n"), Ok(PolicyKind::Band));
    assert_eq!(PolicyKind::parse(b"  fifo \n"), Ok(PolicyKind::Fifo));
    assert_eq!(PolicyKind::DEFAULT, PolicyKind::Credit);
}

#[test]
fn unknown_policies_are_refused() {
    for bad in [&b""[..], b"\n", b"FIFO", b"credit band", b"bandx", b"rr", b"fifo\0"] {
        assert_eq!(PolicyKind::parse(bad), Err(KnobError::UnknownPolicy), "{bad:?}");
    }
    assert_eq!(PolicyKind::parse(b"\xff\xfe"), Err(KnobError::NotText));
}

#[test]
fn weight_range_is_1_to_100_default_10() {
    assert_eq!(Weight::DEFAULT.get(), 10);
    assert_eq!(Weight::parse(b"1\n").map(Weight::get), Ok(1));
    assert_eq!(Weight::parse(b"100").map(Weight::get), Ok(100));
    assert_eq!(Weight::parse(b"0"), Err(KnobError::OutOfRange { min: 1, max: 100 }));
    assert_eq!(Weight::parse(b"101"), Err(KnobError::OutOfRange { min: 1, max: 100 }));
    for bad in [&b""[..], b"-1", b"ten", b"1.5", b"0x10", b"4294967296"] {
        assert_eq!(Weight::parse(bad), Err(KnobError::NotANumber), "{bad:?}");
    }
}

#[test]
fn period_range_is_1ms_to_1s_default_30ms() {
    assert_eq!(Period::DEFAULT.us(), 30_000);
    assert_eq!(Period::DEFAULT.ns(), 30_000 * NS_PER_US);
    assert_eq!(Period::parse(b"1000\n").map(Period::us), Ok(1_000));
    assert_eq!(Period::parse(b"1000000").map(Period::ns), Ok(1_000_000_000));
    let range = Err(KnobError::OutOfRange { min: 1_000, max: 1_000_000 });
    assert_eq!(Period::parse(b"999"), range);
    assert_eq!(Period::parse(b"1000001"), range);
    assert_eq!(Period::parse(b"0"), range);
    assert_eq!(Period::parse(b"30ms"), Err(KnobError::NotANumber));
}

#[test]
fn band_wait_range_is_0_to_10ms_default_500us() {
    assert_eq!(BandWait::DEFAULT.us(), 500);
    assert_eq!(BandWait::parse(b"0").map(BandWait::ns), Ok(0));
    assert_eq!(BandWait::parse(b"10000\n").map(BandWait::ns), Ok(10_000_000));
    assert_eq!(BandWait::parse(b"10001"), Err(KnobError::OutOfRange { min: 0, max: 10_000 }));
    assert_eq!(BandWait::parse(b" "), Err(KnobError::NotANumber));
    let k = Knobs::default();
    assert_eq!((k.period, k.band_wait), (Period::DEFAULT, BandWait::DEFAULT));
}

#[test]
fn every_error_has_a_reason() {
    for e in [KnobError::NotText, KnobError::NotANumber, KnobError::OutOfRange { min: 0, max: 1 }, KnobError::UnknownPolicy] {
        assert!(!e.reason().is_empty());
    }
}
