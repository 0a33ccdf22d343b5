//! gpuvmctl against a fake sysfs tree laid out like the kernel's (uapi/sysfs-gpuvm): the
//! parent's `gpuvm/` files and mdev types under its PCI device, `class/mdev_bus/<pci>` and
//! `bus/mdev/devices/<uuid>` as symlinks. The fake kernel does not act on writes; the tests
//! check what was written and make the resulting devices themselves.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PCI: &str = "0000:00:04.0";
const U1: &str = "11111111-2222-3333-4444-555555555555";
const U2: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

struct Fake {
    dir: tempfile::TempDir,
}

fn put(p: &Path, v: impl ToString) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, format!("{}\n", v.to_string())).unwrap();
}

impl Fake {
    /// One gpuvm GPU (960 MiB / 120 channels guest pool) and an mtty parent gpuvmctl must skip.
    fn new() -> Self {
        let f = Fake { dir: tempfile::tempdir().unwrap() };
        let dev = f.pci_dir();
        for (k, v) in [
            ("vram_physical_mib", 1024),
            ("vram_total_mib", 960),
            ("vram_free_mib", 960),
            ("channels_total", 120),
            ("channels_free", 120),
            ("vgpus", 0),
            ("interrupts", 1),
            ("lazy_shadow", 1),
        ] {
            put(&dev.join("gpuvm").join(k), v);
        }
        for n in [1u64, 2, 4, 8] {
            let t = dev.join(format!("mdev_supported_types/gpuvm-{n}"));
            put(&t.join("name"), format!("gpuvm-{n}"));
            put(&t.join("description"), format!("1/{n} of a GF100: VRAM {} MiB, channels {}", 960 / n, 120 / n));
            put(&t.join("device_api"), "vfio-pci");
            put(&t.join("available_instances"), n);
            put(&t.join("create"), "");
            fs::create_dir_all(t.join("devices")).unwrap();
        }
        let mtty = f.root().join("devices/virtual/mtty/mtty");
        put(&mtty.join("mdev_supported_types/mtty-1/available_instances"), 24);
        fs::create_dir_all(f.root().join("class/mdev_bus")).unwrap();
        fs::create_dir_all(f.root().join("bus/mdev/devices")).unwrap();
        symlink(format!("../../devices/pci0000:00/{PCI}"), f.root().join("class/mdev_bus").join(PCI)).unwrap();
        symlink("../../devices/virtual/mtty/mtty", f.root().join("class/mdev_bus/mtty")).unwrap();
        f
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn pci_dir(&self) -> PathBuf {
        self.root().join("devices/pci0000:00").join(PCI)
    }

    /// What the kernel makes when `uuid` is written to gpuvm-`n`/create.
    fn add_vgpu(&self, uuid: &str, n: u64, weight: u64, submissions: u64) {
        let d = self.pci_dir().join(uuid);
        for (k, v) in [
            ("vram_mib", 960 / n),
            ("vram_base_mib", 64),
            ("channels", 120 / n),
            ("first_channel", 0),
            ("bar1_mib", 128 / n),
            ("bar3_mib", 64 / n),
            ("weight", weight),
            ("mmio_traps", 21000),
            ("mmio_forwarded", 20800),
            ("mmio_denied", 0),
            ("resets", 1),
            ("submissions", submissions),
            ("shadow_syncs", 6),
            ("pte_reads", 6300),
            ("pte_writes", 6200),
            ("pte_refused", 0),
            ("faults", 0),
        ] {
            put(&d.join("gpuvm").join(k), v);
        }
        put(&d.join("gpuvm/type"), format!("gpuvm-{n}"));
        put(&d.join("remove"), "");
        symlink(
            format!("../../../{uuid}"),
            self.pci_dir().join(format!("mdev_supported_types/gpuvm-{n}/devices/{uuid}")),
        )
        .unwrap();
        symlink(format!("../../../devices/pci0000:00/{PCI}/{uuid}"), self.root().join("bus/mdev/devices").join(uuid))
            .unwrap();
        put(&self.pci_dir().join(format!("mdev_supported_types/gpuvm-{n}/available_instances")), n - 1);
    }

    fn sched_knobs(&self) {
        put(&self.pci_dir().join("gpuvm/sched_policy"), "fifo [credit] band");
        put(&self.pci_dir().join("gpuvm/sched_period_us"), 30000);
        put(&self.pci_dir().join("gpuvm/band_wait_us"), 500);
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gpuvmctl")).arg("--sysfs").arg(self.root()).args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "gpuvmctl {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs a command that must fail with exit code `code`; returns its stderr.
    fn err(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(code), "gpuvmctl {args:?}: {o:?}");
        String::from_utf8(o.stderr).unwrap()
    }

    fn read(&self, rel: impl AsRef<Path>) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap()
    }
}

#[test]
fn list_shows_gpu_types_and_vgpus() {
    let f = Fake::new();
    let out = f.ok(&["list"]);
    assert!(
        out.contains(
            "GPU 0000:00:04.0: VRAM 1024 MiB, guest pool 960 MiB (960 free), channels 120 (120 free), 0 vGPU(s)"
        ),
        "{out}"
    );
    assert!(out.contains("no knobs in this gpuvm.ko (no sched_policy, sched_period_us, band_wait_us in"), "{out}");
    assert!(out.contains("gpuvm-4          4  1/4 of a GF100: VRAM 240 MiB, channels 30"), "{out}");
    assert!(out.contains("no vGPUs"), "{out}");
    assert!(!out.contains("mtty"), "the mtty parent is not gpuvm's: {out}");

    f.add_vgpu(U1, 2, 10, 9);
    let out = f.ok(&["list"]);
    let row = out.lines().find(|l| l.contains(U1)).unwrap_or_else(|| panic!("no {U1} in {out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols, [U1, "gpuvm-2", "480", "64", "60", "0", "10"], "{out}");
    assert!(out.contains("gpuvm-2          1"), "available_instances after one gpuvm-2: {out}");
}

#[test]
fn list_json_has_every_file() {
    let f = Fake::new();
    f.add_vgpu(U1, 4, 25, 3);
    let v: serde_json::Value = serde_json::from_str(&f.ok(&["list", "--json"])).unwrap();
    let g = &v["gpus"][0];
    assert_eq!(v["gpus"].as_array().unwrap().len(), 1, "mtty is skipped");
    assert_eq!(g["pci"], PCI);
    assert_eq!(g["gpuvm"]["vram_total_mib"], 960);
    assert_eq!(g["gpuvm"]["lazy_shadow"], 1);
    assert_eq!(g["sched"], serde_json::Value::Null);
    assert_eq!(g["types"][2]["type"], "gpuvm-4");
    assert_eq!(g["types"][2]["available_instances"], 3);
    assert_eq!(g["types"][2]["devices"][0], U1);
    let u = &g["vgpus"][0];
    assert_eq!(u["uuid"], U1);
    assert_eq!(u["parent"], PCI);
    assert_eq!(u["gpuvm"]["type"], "gpuvm-4");
    assert_eq!(u["gpuvm"]["vram_mib"], 240);
    assert_eq!(u["gpuvm"]["channels"], 30);
    assert_eq!(u["gpuvm"]["weight"], 25);
    assert_eq!(u["gpuvm"]["submissions"], 3);

    f.sched_knobs();
    let v: serde_json::Value = serde_json::from_str(&f.ok(&["list", "--json"])).unwrap();
    assert_eq!(v["gpus"][0]["sched"]["policy"], "credit");
    assert_eq!(v["gpus"][0]["sched"]["sched_period_us"], 30000);
    assert_eq!(v["gpus"][0]["sched"]["band_wait_us"], 500);
}

#[test]
fn create_writes_the_uuid_to_the_type() {
    let f = Fake::new();
    assert_eq!(f.ok(&["create", "gpuvm-4", "--uuid", U1]).trim(), U1);
    assert_eq!(f.read(format!("devices/pci0000:00/{PCI}/mdev_supported_types/gpuvm-4/create")), U1);
    assert_eq!(f.ok(&["create", "8", "--uuid", U2, "--parent", PCI]).trim(), U2);
    assert_eq!(f.read(format!("devices/pci0000:00/{PCI}/mdev_supported_types/gpuvm-8/create")), U2);
    // Without --uuid the kernel's random UUID source names it.
    let u = f.ok(&["create", "2"]);
    assert_eq!(u.trim().len(), 36, "{u}");

    let e = f.err(&["create", "gpuvm-3", "--uuid", U1], 1);
    assert!(e.contains("has no type gpuvm-3") && e.contains("its types: gpuvm-1 gpuvm-2 gpuvm-4 gpuvm-8"), "{e}");
    let e = f.err(&["create", "gpuvm-2", "--parent", "0000:00:09.0"], 1);
    assert!(e.contains("0000:00:09.0 is not a GPU bound to gpuvm"), "{e}");
    let e = f.err(&["create", "big"], 2);
    assert!(e.contains("TYPE is gpuvm-N or N, not 'big'"), "{e}");
}

#[test]
fn remove_writes_1_and_names_a_missing_vgpu() {
    let f = Fake::new();
    f.add_vgpu(U1, 2, 10, 0);
    f.ok(&["remove", U1]);
    assert_eq!(f.read(format!("bus/mdev/devices/{U1}/remove")), "1");
    let e = f.err(&["remove", U2], 1);
    assert!(
        e.contains(&format!("no gpuvm vGPU {U2} (no {}", f.root().join("bus/mdev/devices").join(U2).display())),
        "{e}"
    );
}

#[test]
fn a_refused_write_names_errno_and_path() {
    let f = Fake::new();
    f.add_vgpu(U1, 2, 10, 0);
    // A directory where the file should be: the write fails with EISDIR.
    let remove = f.pci_dir().join(U1).join("remove");
    fs::remove_file(&remove).unwrap();
    fs::create_dir(&remove).unwrap();
    let e = f.err(&["remove", U1], 1);
    assert!(
        e.contains(&format!(
            "gpuvmctl: writing '1' to {}: EISDIR (Is a directory)",
            f.root().join(format!("bus/mdev/devices/{U1}/remove")).display()
        )),
        "{e}"
    );
}

#[test]
fn sched_without_knobs_says_so_and_sets_weights() {
    let f = Fake::new();
    f.add_vgpu(U1, 2, 10, 0);
    f.add_vgpu(U2, 2, 30, 0);
    let out = f.ok(&["sched"]);
    assert!(
        out.contains("scheduler: no knobs in this gpuvm.ko (no sched_policy, sched_period_us, band_wait_us in"),
        "{out}"
    );
    assert!(out.contains(&format!("{U1} gpuvm-2      10  25.0%")), "{out}");
    assert!(out.contains(&format!("{U2} gpuvm-2      30  75.0%")), "{out}");

    let out = f.ok(&["sched", "--weight", &format!("{U1}=30")]);
    assert_eq!(f.read(format!("bus/mdev/devices/{U1}/gpuvm/weight")), "30");
    assert!(out.contains(&format!("{U1} gpuvm-2      30  50.0%")), "{out}");

    let e = f.err(&["sched", "--policy", "band"], 1);
    assert!(e.contains("this gpuvm.ko has no scheduler knob sched_policy (no "), "{e}");
    let e = f.err(&["sched", "--weight", "nobody=5"], 1);
    assert!(e.contains("no gpuvm vGPU nobody"), "{e}");
    let e = f.err(&["sched", "--weight", "5"], 2);
    assert!(e.contains("--weight takes UUID=WEIGHT"), "{e}");
}

#[test]
fn sched_with_knobs_shows_and_sets_them() {
    let f = Fake::new();
    f.sched_knobs();
    let out = f.ok(&["sched"]);
    assert!(out.contains("policy: credit (sched_policy: fifo [credit] band)"), "{out}");
    assert!(out.contains("sched_period_us: 30000") && out.contains("band_wait_us: 500"), "{out}");
    f.ok(&["sched", "--policy", "band", "--period-us", "20000", "--band-wait-us=0"]);
    assert_eq!(f.read(format!("devices/pci0000:00/{PCI}/gpuvm/sched_policy")), "band");
    assert_eq!(f.read(format!("devices/pci0000:00/{PCI}/gpuvm/sched_period_us")), "20000");
    assert_eq!(f.read(format!("devices/pci0000:00/{PCI}/gpuvm/band_wait_us")), "0");
}

#[test]
fn top_rates_come_from_counter_deltas() {
    use std::io::{BufRead, BufReader};
    let f = Fake::new();
    f.add_vgpu(U1, 2, 10, 100);
    f.add_vgpu(U2, 2, 30, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpuvmctl"))
        .arg("--sysfs")
        .arg(f.root())
        .args(["top", "--iterations", "3", "--interval", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A frame is 5 lines (title, GPU, column names, two vGPUs). Once the first is out, U1
    // makes 10 submissions and faults twice: a later frame shows it, whichever interval the
    // change fell in on a busy machine, so nothing here depends on timing.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map(Result::unwrap);
    let mut out: Vec<String> = lines.by_ref().take(5).collect();
    put(&f.pci_dir().join(U1).join("gpuvm/submissions"), 110);
    put(&f.pci_dir().join(U1).join("gpuvm/faults"), 2);
    out.extend(lines);
    assert!(child.wait().unwrap().success());
    let all = out.join("\n");
    let frames: Vec<&[String]> = out.split(|l| l.is_empty()).collect();
    assert_eq!(frames.len(), 3, "{all}");
    for fr in &frames {
        assert_eq!(fr.len(), 5, "{all}");
        assert_eq!(fr[1], "GPU 0000:00:04.0  vGPUs 2  VRAM free 960/960 MiB  channels free 120/120  interrupts/s 0.0  no scheduler knobs", "{all}");
    }
    // UUID TYPE VRAM WEIGHT SHARE SUBM% SUBM/s TRAPS/s DENIED/s SYNCS/s FAULTS GPU%
    let cols = |l: &String| -> Vec<String> { l.split_whitespace().map(str::to_string).collect() };
    let first = cols(&frames[0][3]);
    assert_eq!(first[0], U1);
    assert_eq!(&first[1..], ["gpuvm-2", "480", "10", "25.0%", "-", "0.0", "0.0", "0.0", "0.0", "0", "-"], "{all}");
    let moved: Vec<&&[String]> = frames[1..].iter().filter(|fr| cols(&fr[3])[10] == "2+2").collect();
    assert_eq!(moved.len(), 1, "exactly one later frame has U1's new faults: {all}");
    let (fr, r1, r2) = (moved[0], cols(&moved[0][3]), cols(&moved[0][4]));
    assert_eq!(&r1[4..6], ["25.0%", "100.0%"], "{all}");
    assert_eq!(&r2[4..7], ["75.0%", "0.0%", "0.0"], "{all}");
    // 10 submissions over the frame's interval.
    let dt: f64 = fr[0].trim_start_matches("gpuvmctl top: rates over the last ").trim_end_matches('s').parse().unwrap();
    let subm: f64 = r1[6].parse().unwrap();
    assert!((subm * dt - 10.0).abs() < 1.0, "SUBM/s {subm} over {dt}s is not 10 submissions: {all}");
}

#[test]
fn top_iterations_print_frames() {
    let f = Fake::new();
    let out = f.ok(&["top", "--iterations", "2", "--interval", "0.05"]);
    assert_eq!(out.matches("gpuvmctl top: rates over the last").count(), 2, "{out}");
    assert!(out.contains("(no vGPUs)"), "{out}");
}

#[test]
fn stats_json_has_counters_only() {
    let f = Fake::new();
    f.add_vgpu(U1, 8, 10, 4);
    let v: serde_json::Value = serde_json::from_str(&f.ok(&["stats", "--json"])).unwrap();
    assert!(v["time_unix_ms"].as_u64().unwrap() > 0);
    let g = &v["gpus"][0];
    assert_eq!(g["counters"]["interrupts"], 1);
    let u = &g["vgpus"][0];
    assert_eq!(u["uuid"], U1);
    assert_eq!(u["type"], "gpuvm-8");
    let c = u["counters"].as_object().unwrap();
    let keys: Vec<&str> = c.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "faults",
            "mmio_denied",
            "mmio_forwarded",
            "mmio_traps",
            "pte_reads",
            "pte_refused",
            "pte_writes",
            "resets",
            "shadow_syncs",
            "submissions"
        ]
    );
    assert_eq!(c["submissions"], 4);
    let text = f.ok(&["stats"]);
    assert!(text.contains("GPU 0000:00:04.0: interrupts=1\n"), "{text}");
    assert!(text.contains(&format!("{U1} gpuvm-8 faults=0 mmio_denied=0 mmio_forwarded=20800")), "{text}");
}

#[test]
fn no_gpu_and_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gpuvmctl")).env("GPUVMCTL_SYSFS", d.path()).arg("list").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("no GPU bound to gpuvm"), "{o:?}");
    let o = Command::new(env!("CARGO_BIN_EXE_gpuvmctl"))
        .env("GPUVMCTL_SYSFS", d.path())
        .args(["create", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is gpuvm.ko loaded?"), "{o:?}");

    let f = Fake::new();
    assert!(f.err(&["frobnicate"], 2).contains("unknown command 'frobnicate'"));
    assert!(f.err(&["list", "--jsn"], 2).contains("unknown option --jsn"));
    assert!(f.err(&["top", "--interval", "0"], 2).contains("--interval"));
    assert!(f.err(&["remove"], 2).contains("remove takes one UUID"));
}
