//! Every workload against the in-process model, with small sizes; plus the checker failing on
//! one corrupted element, the polled fence path, and the VFIO transport's error path.

use gpuvm_guest_driver::record::Phase;
use gpuvm_guest_driver::transport::model::ModelTransport;
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use std::io;

fn opts() -> Opts {
    Opts { size: Size::Small, ..Opts::default() }
}

fn run(name: &str, o: &Opts) -> gpuvm_guest_driver::record::Record {
    let gpu = ModelTransport::new(256).expect("model").gpu().clone();
    let open = move || -> io::Result<Box<dyn Transport>> { Ok(Box::new(ModelTransport::with_gpu(gpu.clone()))) };
    workloads::run(name, &open, o)
}

fn assert_ok(name: &str) {
    let r = run(name, &opts());
    let j = r.to_json();
    assert!(r.ok, "{name} failed: {j}");
    assert!(r.phases.get(Phase::Init).as_nanos() > 0, "{j}");
    assert!(r.bars[0].writes > 0 && r.bars[2].writes > 0, "BAR0/BAR3 accesses counted: {j}");
    assert!(j.starts_with(&format!("{{\"workload\":\"{name}\"")) && !j.contains('\n'));
}

#[test]
fn hotspot() {
    assert_ok("hotspot");
}
#[test]
fn lud() {
    assert_ok("lud");
}
#[test]
fn srad() {
    assert_ok("srad");
}
#[test]
fn needle() {
    assert_ok("needle");
}
#[test]
fn mmul() {
    assert_ok("mmul");
}
#[test]
fn init_close() {
    assert_ok("init_close");
}
#[test]
fn malloc_free() {
    assert_ok("malloc_free");
}
#[test]
fn copy() {
    let r = run("copy", &opts());
    assert!(r.ok, "{}", r.to_json());
    let has = |k: &str| r.extra.iter().any(|(n, _)| n == k);
    assert!(has("htod_4k_us") && has("dtoh_1024k_us"), "per-size figures present");
    assert!(r.bars[1].writes > 0 && r.bars[1].reads > 0, "the small copies went through BAR1");
}
#[test]
fn launch_latency() {
    assert_ok("launch_latency");
}
#[test]
fn fence_latency() {
    assert_ok("fence_latency");
}

/// One flipped element must make each checked workload fail and name the element.
#[test]
fn corrupt_one_fails() {
    let o = Opts { corrupt_one: true, ..opts() };
    for name in ["mmul", "needle", "copy"] {
        let r = run(name, &o);
        assert!(!r.ok, "{name} with a corrupted element passed");
        let e = r.error.unwrap();
        assert!(e.starts_with("mismatch in") && e.contains("1 of") && e.contains("got"), "{name}: {e}");
    }
}

/// Fence waits without interrupts (the poll fallback) give the same results.
#[test]
fn polled_fences() {
    let o = Opts { use_irq: false, ..opts() };
    for name in ["hotspot", "fence_latency"] {
        let r = run(name, &o);
        assert!(r.ok, "{}", r.to_json());
        assert!(r.device.contains("irq=None"), "{}", r.device);
    }
}

#[test]
fn unknown_workload_is_an_error() {
    let r = run("nope", &opts());
    assert!(!r.ok && r.error.unwrap().contains("unknown workload"));
}

/// Without a VFIO device the transport fails cleanly (this host has none).
#[test]
fn vfio_open_missing_device_errors() {
    for p in [VfioPath::Auto, VfioPath::NoIommu, VfioPath::Group, VfioPath::Cdev] {
        let e = VfioTransport::open(VfioTarget::Pci("0000:ff:1f.7".into()), p).err().expect("no such device");
        assert!(!e.to_string().is_empty());
        let e = VfioTransport::open(VfioTarget::Mdev("00000000-0000-0000-0000-000000000000".into()), p).err().expect("no such mdev");
        assert!(!e.to_string().is_empty());
    }
}
