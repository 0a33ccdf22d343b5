//! gpuvm-vfio-test: checks gpuvm vGPUs through VFIO and sysfs. Every subcommand exits 0 when
//! all its checks pass, and otherwise non-zero after a line saying what failed.

use gpuvm_vfio_client::bad_ioctl::check_bad_ioctls;
use gpuvm_vfio_client::config::{check_boot0, check_config, check_info, check_isolation};
use gpuvm_vfio_client::contract::Shape;
use gpuvm_vfio_client::device::{VfioDevice, VfioPath};
use gpuvm_vfio_client::errno::Errno;
use gpuvm_vfio_client::irqs::check_irqs;
use gpuvm_vfio_client::lifecycle::{self, CycleOpts};
use gpuvm_vfio_client::mdev::{self, Parent, PoolOrigin, SysfsVgpu};
use gpuvm_vfio_client::report::Report;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: gpuvm-vfio-test COMMAND [OPTIONS]
  config-space --mdev UUID --path group|cdev|both
      device/region/IRQ info, config space (identity, caps, command, BAR sizing, MSI), RESET,
      the resets and mmio_traps counters, PMC BOOT_0
  isolation --mdev UUID --other UUID --path group|cdev|both
      both vGPUs open at once: programming/resetting one leaves the other alone, MSI stays apart
  irqs --mdev UUID --path group|cdev|both
      INTx/MSI/REQ eventfds: install, fire (DATA_NONE|TRIGGER), remove, tear down
  bad-ioctl --mdev UUID --path group|cdev|both
      malformed ioctls and accesses fail with the contract's errno; the device still works
  cycle --parent BDF --type gpuvm-N --count N --path group|cdev|both [POOL] [--generic]
      create/open/close/remove N times, checking available_instances and vgpus each step
      (--generic: skip gpuvm-specific checks, for other mdev drivers such as mtty)
  hold --mdev UUID --path group|cdev [--timeout SECONDS (60)]
      open, install a REQ eventfd, print \"holding\", close once the REQ fires
  check-parent --parent BDF [POOL] [--expect-avail \"A1 A2 A4 A8\"]
      the parent's types, vGPUs, free counts and available_instances are consistent
  pool-origin --parent BDF
      on an empty parent: create and remove a gpuvm-1 and print its placement as POOL options
      (--pool-vram-base MiB --pool-first-channel N: where the guest pool starts; default 0 0)
  sysfs-write PATH VALUE [--expect-errno NAME]
      one write(2) of VALUE; with --expect-errno it must fail with exactly that errno";

struct Args {
    opts: HashMap<String, String>,
    flags: Vec<String>,
    pos: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args { opts: HashMap::new(), flags: Vec::new(), pos: Vec::new() };
        let mut it = args.iter();
        while let Some(s) = it.next() {
            if let Some(name) = s.strip_prefix("--") {
                if name == "generic" {
                    a.flags.push(name.to_string());
                } else {
                    let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    a.opts.insert(name.to_string(), v.clone());
                }
            } else {
                a.pos.push(s.clone());
            }
        }
        Ok(a)
    }
    fn get(&self, name: &str) -> Result<&str, String> {
        self.opts.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required"))
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
    fn num(&self, name: &str, default: u64) -> Result<u64, String> {
        self.opts.get(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{name}: '{v}' is not a number")))
    }
    fn origin(&self) -> Result<PoolOrigin, String> {
        Ok(PoolOrigin { vram_base_mib: self.num("pool-vram-base", 0)?, first_channel: self.num("pool-first-channel", 0)? })
    }
    fn paths(&self) -> Result<Vec<VfioPath>, String> {
        match self.get("path")? {
            "both" => Ok(vec![VfioPath::Group, VfioPath::Cdev]),
            p => Ok(vec![p.parse()?]),
        }
    }
}

type Check = fn(&VfioDevice, Shape, &SysfsVgpu, &mut Report) -> Result<(), String>;

/// Opens the vGPU through each path and runs `check` on it.
fn per_path(a: &Args, what: &str, check: Check) -> Result<(), String> {
    let uuid = a.get("mdev")?;
    let ty = mdev::type_of(uuid)?;
    let shape = Shape::from_type(&ty).ok_or_else(|| format!("{uuid}: type {ty} is not gpuvm-N"))?;
    let attrs = SysfsVgpu { uuid: uuid.to_string() };
    let mut failed = Vec::new();
    for path in a.paths()? {
        let dev = VfioDevice::open_mdev(uuid, path).map_err(|e| format!("{what} ({path}): {e}"))?;
        println!("{what}: {ty} {}", dev.desc);
        let mut r = Report::new(format!("{what} {ty} {path}"));
        check(&dev, shape, &attrs, &mut r)?;
        if let Err(e) = r.finish() {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

fn run(cmd: &str, a: &Args) -> Result<(), String> {
    match cmd {
        "config-space" => per_path(a, "config-space", |d, s, attrs, r| {
            check_info(d, s, r);
            check_config(d, s, attrs, r);
            check_boot0(d, attrs, r);
            Ok(())
        }),
        "isolation" => {
            let (ua, ub) = (a.get("mdev")?, a.get("other")?);
            let (aa, ab) = (SysfsVgpu { uuid: ua.to_string() }, SysfsVgpu { uuid: ub.to_string() });
            let mut failed = Vec::new();
            for path in a.paths()? {
                let da = VfioDevice::open_mdev(ua, path)?;
                let db = VfioDevice::open_mdev(ub, path)?;
                let mut r = Report::new(format!("isolation {path}"));
                check_isolation(&da, &aa, &db, &ab, &mut r)?;
                failed.extend(r.finish().err());
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("\n"))
            }
        }
        "irqs" => per_path(a, "irqs", |d, _, _, r| check_irqs(d, r)),
        "bad-ioctl" => per_path(a, "bad-ioctl", |d, s, _, r| check_bad_ioctls(d, s, r)),
        "cycle" => {
            let count = a.num("count", 0)? as u32;
            lifecycle::cycle(&CycleOpts {
                parent: a.get("parent")?.to_string(),
                ty: a.get("type")?.to_string(),
                count,
                paths: a.paths()?,
                generic: a.flag("generic"),
                origin: a.origin()?,
            })
        }
        "hold" => {
            let paths = a.paths()?;
            let [path] = paths[..] else { return Err("hold takes one --path".into()) };
            let secs = a.num("timeout", 60)?;
            lifecycle::hold(a.get("mdev")?, path, Duration::from_secs(secs))
        }
        "check-parent" => {
            let p = Parent { bdf: a.get("parent")?.to_string() };
            let s = p.snapshot(a.origin()?)?;
            let mut r = Report::new(format!("check-parent {}", p.bdf));
            s.check(&mut r);
            if let Some(want) = a.opts.get("expect-avail") {
                let want: Vec<u32> = want.split_whitespace().map(|w| w.parse().map_err(|_| format!("--expect-avail: '{w}'"))).collect::<Result<_, _>>()?;
                r.eq("available_instances of gpuvm-1/2/4/8", s.available(), want);
            }
            println!("check-parent: {} vGPUs, available {:?}, vram free {}/{} MiB, channels free {}/{}", s.devs.len(), s.available(), s.vram_free_mib, s.vram_total_mib, s.channels_free, s.channels_total);
            r.finish()
        }
        "pool-origin" => {
            let p = Parent { bdf: a.get("parent")?.to_string() };
            println!("{}", p.pool_origin()?.to_args());
            Ok(())
        }
        "sysfs-write" => {
            let [path, value] = &a.pos[..] else { return Err("sysfs-write PATH VALUE".into()) };
            let res = mdev::write_attr(Path::new(path), value.as_bytes());
            match (a.opts.get("expect-errno"), res) {
                (None, Ok(())) => Ok(()),
                (None, Err(e)) => Err(format!("write '{value}' to {path}: {e}")),
                (Some(want), res) => {
                    let want = Errno::parse(want).ok_or_else(|| format!("--expect-errno: unknown errno '{want}'"))?;
                    match res {
                        Err(e) if e == want => {
                            println!("write '{value}' to {path}: {e}, as expected");
                            Ok(())
                        }
                        Err(e) => Err(format!("write '{value}' to {path}: failed with {e}, want {want}")),
                        Ok(()) => Err(format!("write '{value}' to {path}: succeeded, want {want}")),
                    }
                }
            }
        }
        _ => Err(format!("unknown command '{cmd}'\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "-h" || cmd == "--help" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let res = Args::parse(&argv[1..]).and_then(|a| run(cmd, &a));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAIL gpuvm-vfio-test {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
