//! The device checks against the in-process reference vGPU: a conforming one passes every
//! check for every type, and each deviation is caught by name.

use crate::bad_ioctl::check_bad_ioctls;
use crate::config::{check_boot0, check_config, check_info, check_isolation};
use crate::contract::{Shape, SHARES};
use crate::fake::{FakeVgpu, Quirk};
use crate::irqs::check_irqs;
use crate::report::Report;

/// Runs every device check; the failures.
fn run(share: u32, quirks: &[Quirk]) -> Vec<String> {
    let shape = Shape::new(share).unwrap();
    let dev = FakeVgpu::new(shape, quirks);
    let mut r = Report::quiet(format!("gpuvm-{share}"));
    check_info(&dev, shape, &mut r);
    check_config(&dev, shape, &dev, &mut r);
    check_boot0(&dev, &dev, &mut r);
    check_irqs(&dev, &mut r).unwrap();
    check_bad_ioctls(&dev, shape, &mut r).unwrap();
    assert!(r.checks() > 300, "only {} checks", r.checks());
    r.failures().to_vec()
}

#[test]
fn conforming_vgpu_passes_every_type() {
    for n in SHARES {
        assert_eq!(run(n, &[]), Vec::<String>::new(), "gpuvm-{n}");
    }
    // Short transfers at the end of a region are allowed too.
    assert_eq!(run(4, &[Quirk::ShortAtEnd]), Vec::<String>::new());
}

/// Each quirk makes at least one check fail with a message containing `needle`.
#[test]
fn deviations_are_caught() {
    let cases = [
        (Quirk::VendorWritable, "vendor/device (read-only): after writing 0xffffffff"),
        (Quirk::Bar0AnySize, "read 2@0x0 of region 0 (BAR0): succeeded"),
        (Quirk::ResetKeepsCommand, "after the second reset: command"),
        (Quirk::MsiFireSignalsReq, "REQ eventfd count after firing MSI"),
        (Quirk::GetInfoIgnoresArgsz, "GET_INFO argsz 0: succeeded"),
        (Quirk::SetIrqsIgnoresStart, "SET_IRQS MSI start 1 (beyond 1 vector): succeeded"),
        (Quirk::PastEnd, "read 4@0xfe of region 7 (config) crossing its end at 0x100: Ok(4)"),
        (Quirk::NoResetCounter, "sysfs resets counter after VFIO_DEVICE_RESET"),
        (Quirk::UnknownIoctlEinval, "unknown ioctl _IO(';', 0xf0): failed with EINVAL"),
        (Quirk::Bar1WrongSize, "region 1 (BAR1) size"),
    ];
    for (q, needle) in cases {
        let f = run(8, &[q]);
        assert!(f.iter().any(|m| m.contains(needle)), "{q:?}: no failure containing '{needle}' in {f:#?}");
    }
    // BAR1 sizing sees the wrong size too.
    let f = run(2, &[Quirk::Bar1WrongSize]);
    assert!(f.iter().any(|m| m.starts_with("BAR1 low sizing")), "{f:#?}");
}

#[test]
fn isolated_vgpus_pass_and_shared_state_is_caught() {
    let shape = Shape::new(2).unwrap();
    let (a, b) = (FakeVgpu::new(shape, &[]), FakeVgpu::new(shape, &[]));
    let mut r = Report::quiet("isolation");
    check_isolation(&a, &a, &b, &b, &mut r).unwrap();
    assert_eq!(r.failures(), &[] as &[String]);
    // One device seen twice: the "other" is programmed and reset along with the first.
    let mut r = Report::quiet("isolation");
    check_isolation(&a, &a, &a, &a, &mut r).unwrap();
    let f = r.failures();
    assert!(f.iter().any(|m| m.starts_with("second vGPU while the first is programmed: command")), "{f:#?}");
    assert!(f.iter().any(|m| m.starts_with("first vGPU command after the second's reset")), "{f:#?}");
}
