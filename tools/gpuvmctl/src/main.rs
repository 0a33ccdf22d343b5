//! gpuvmctl: the gpuvm vGPUs of this host at a glance, and the few writes an administrator
//! makes (create, remove, weights, scheduler knobs), all through the sysfs ABI documented in
//! uapi/sysfs-gpuvm. The sysfs root is /sys unless `--sysfs DIR` or GPUVMCTL_SYSFS says
//! otherwise (the tests use a fake tree).

mod error;
mod sysfs;
mod top;

use error::{Error, Knob, Result};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sysfs::{Gpu, Sysfs};

const USAGE: &str = "\
usage: gpuvmctl [--sysfs DIR] COMMAND
  list [--json]                       GPUs, vGPU types with available instances, vGPUs
  create TYPE [--uuid UUID] [--parent PCI]
                                      make a vGPU of TYPE (gpuvm-N or N); prints its UUID
  remove UUID                         remove a vGPU
  sched [--parent PCI] [--policy P] [--period-us N] [--band-wait-us N] [--weight UUID=W]...
                                      set the given knobs, then show policy, period, wait, weights
  top [--interval SECONDS] [--iterations N | --once]
                                      per-vGPU GPU share, submissions/s, traps/s, faults, VRAM
  stats [--json]                      every counter of every vGPU, once
The sysfs root is /sys, or DIR, or $GPUVMCTL_SYSFS.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => {}
        Err(e @ Error::Usage(_)) => {
            eprintln!("gpuvmctl: {e}\n{USAGE}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("gpuvmctl: {e}");
            std::process::exit(1);
        }
    }
}

/// The command line after the global options: positional words and `--flag [value]` pairs.
struct Args {
    words: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

/// Flags that take no value, and those that take one; each command accepts some of them.
const SWITCHES: [&str; 3] = ["--json", "--once", "--help"];
const VALUED: [&str; 9] = [
    "--sysfs",
    "--uuid",
    "--parent",
    "--policy",
    "--period-us",
    "--band-wait-us",
    "--weight",
    "--interval",
    "--iterations",
];

impl Args {
    fn parse(raw: Vec<String>) -> Result<Self> {
        let (mut words, mut flags) = (Vec::new(), Vec::new());
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if let Some((k, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
                flags.push((k.to_string(), Some(v.to_string())));
            } else if SWITCHES.contains(&a.as_str()) {
                flags.push((a, None));
            } else if a.starts_with("--") && !VALUED.contains(&a.as_str()) {
                return Err(Error::Usage(format!("unknown option {a}")));
            } else if a.starts_with("--") {
                let v = it.next().ok_or_else(|| Error::Usage(format!("{a} needs a value")))?;
                flags.push((a, Some(v)));
            } else {
                words.push(a);
            }
        }
        Ok(Self { words, flags })
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags.iter().filter(move |(k, _)| k == name).filter_map(|(_, v)| v.as_deref())
    }

    /// Refuses flags the command does not know, so a typo is not silently ignored.
    fn only(&self, known: &[&str]) -> Result<()> {
        match self.flags.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(Error::Usage(format!("unknown option {k}"))),
            None => Ok(()),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.value(name)
            .map(|v| v.parse().map_err(|_| Error::Usage(format!("{name}: '{v}' is not a number"))))
            .transpose()
    }
}

fn run(raw: Vec<String>) -> Result<()> {
    let mut a = Args::parse(raw)?;
    if a.has("--help") || a.words.is_empty() {
        println!("{USAGE}");
        return Ok(());
    }
    let root = a
        .value("--sysfs")
        .map(str::to_string)
        .or_else(|| std::env::var("GPUVMCTL_SYSFS").ok())
        .unwrap_or_else(|| "/sys".into());
    a.flags.retain(|(k, _)| k != "--sysfs");
    let sys = Sysfs::new(root);
    let cmd = a.words.remove(0);
    match cmd.as_str() {
        "list" => {
            a.only(&["--json"])?;
            list(&sys, a.has("--json"))
        }
        "create" => {
            a.only(&["--uuid", "--parent"])?;
            let [ty] = &a.words[..] else { return Err(Error::Usage("create takes one TYPE".into())) };
            let uuid = create(&sys, ty, a.value("--uuid"), a.value("--parent"))?;
            println!("{uuid}");
            Ok(())
        }
        "remove" => {
            a.only(&[])?;
            let [uuid] = &a.words[..] else { return Err(Error::Usage("remove takes one UUID".into())) };
            remove(&sys, uuid)
        }
        "sched" => {
            a.only(&["--parent", "--policy", "--period-us", "--band-wait-us", "--weight"])?;
            if !a.words.is_empty() {
                return Err(Error::Usage(format!("sched takes options only, not '{}'", a.words[0])));
            }
            sched(&sys, &a)
        }
        "top" => {
            a.only(&["--interval", "--iterations", "--once"])?;
            let interval: f64 = a.number("--interval")?.unwrap_or(1.0);
            if !(interval > 0.0 && interval < 3600.0) {
                return Err(Error::Usage("--interval is seconds, more than 0".into()));
            }
            let n: Option<u64> = if a.has("--once") { Some(1) } else { a.number("--iterations")? };
            top(&sys, Duration::from_secs_f64(interval), n)
        }
        "stats" => {
            a.only(&["--json"])?;
            stats(&sys, a.has("--json"))
        }
        c => Err(Error::Usage(format!("unknown command '{c}'"))),
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON of plain values"));
}

fn no_gpu(sys: &Sysfs) -> String {
    format!("no GPU bound to gpuvm (no {}/*/gpuvm): is gpuvm.ko loaded?", sys.mdev_bus().display())
}

fn list(sys: &Sysfs, as_json: bool) -> Result<()> {
    let gpus = sys.gpus()?;
    if as_json {
        print_json(&json!({ "gpus": gpus.iter().map(sysfs::gpu_json).collect::<Vec<_>>() }));
        return Ok(());
    }
    if gpus.is_empty() {
        println!("{}", no_gpu(sys));
    }
    for g in &gpus {
        println!(
            "GPU {}: VRAM {} MiB, guest pool {} MiB ({} free), channels {} ({} free), {} vGPU(s), lazy_shadow {}",
            g.pci,
            g.text("vram_physical_mib"),
            g.text("vram_total_mib"),
            g.text("vram_free_mib"),
            g.text("channels_total"),
            g.text("channels_free"),
            g.vgpus.len(),
            g.text("lazy_shadow")
        );
        println!("  scheduler: {}", sched_line(sys, g));
        println!("  {:<8} {:>9}  DESCRIPTION", "TYPE", "AVAILABLE");
        for t in &g.types {
            println!("  {:<8} {:>9}  {}", t.id, t.available, t.description);
        }
        if g.vgpus.is_empty() {
            println!("  no vGPUs");
            continue;
        }
        println!(
            "  {:<36} {:<8} {:>8} {:>9} {:>8} {:>6} {:>6}",
            "UUID", "TYPE", "VRAM MiB", "BASE MiB", "CHANNELS", "FIRST", "WEIGHT"
        );
        for v in &g.vgpus {
            println!(
                "  {:<36} {:<8} {:>8} {:>9} {:>8} {:>6} {:>6}",
                v.uuid,
                v.text("type"),
                v.text("vram_mib"),
                v.text("vram_base_mib"),
                v.text("channels"),
                v.text("first_channel"),
                v.text("weight")
            );
        }
    }
    Ok(())
}

fn sched_line(sys: &Sysfs, g: &Gpu) -> String {
    match g.sched() {
        Some(knobs) => {
            knobs
                .iter()
                .map(|(k, v)| {
                    if *k == "sched_policy" {
                        format!("policy {}", sysfs::active_policy(v))
                    } else {
                        format!("{k} {v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        None => format!(
            "no knobs in this gpuvm.ko (no {} in {})",
            sysfs::SCHED_KNOBS.join(", "),
            sys.parent_dir(&g.pci).join("gpuvm").display()
        ),
    }
}

/// `gpuvm-4` or `4`.
fn type_id(ty: &str) -> Result<String> {
    let n = ty.strip_prefix("gpuvm-").unwrap_or(ty);
    match n.parse::<u32>() {
        Ok(n) if n > 0 => Ok(format!("gpuvm-{n}")),
        _ => Err(Error::Usage(format!("TYPE is gpuvm-N or N, not '{ty}'"))),
    }
}

fn new_uuid() -> Result<String> {
    let p = std::path::Path::new("/proc/sys/kernel/random/uuid");
    std::fs::read_to_string(p).map(|s| s.trim().to_string()).map_err(|e| Error::read(p, e))
}

/// The GPU to act on: the given one, the only one, or (for create) the first with room.
fn pick_gpu(sys: &Sysfs, parent: Option<&str>, room_for: Option<&str>) -> Result<String> {
    let names = sys.gpu_names()?;
    if let Some(p) = parent {
        return if names.iter().any(|n| n == p) {
            Ok(p.to_string())
        } else {
            Err(Error::Msg(format!(
                "{p} is not a GPU bound to gpuvm (no {})",
                sys.parent_dir(p).join("gpuvm").display()
            )))
        };
    }
    match (&names[..], room_for) {
        ([], _) => Err(Error::Msg(no_gpu(sys))),
        ([one], _) => Ok(one.clone()),
        (_, Some(ty)) => {
            // The first GPU with an instance free; if none has, the first, whose refusal
            // then says why.
            for n in &names {
                let avail =
                    std::fs::read_to_string(sys.type_dir(n, ty).join("available_instances")).unwrap_or_default();
                if avail.trim().parse::<u64>().unwrap_or(0) > 0 {
                    return Ok(n.clone());
                }
            }
            Ok(names[0].clone())
        }
        (_, None) => Err(Error::Msg(format!("{} GPUs are bound to gpuvm: say which with --parent", names.len()))),
    }
}

fn create(sys: &Sysfs, ty: &str, uuid: Option<&str>, parent: Option<&str>) -> Result<String> {
    let id = type_id(ty)?;
    let pci = pick_gpu(sys, parent, Some(&id))?;
    let dir = sys.type_dir(&pci, &id);
    if !dir.is_dir() {
        let have = sys.gpu(&pci)?.types.iter().map(|t| t.id.clone()).collect::<Vec<_>>().join(" ");
        return Err(Error::Msg(format!("GPU {pci} has no type {id} (no {}); its types: {have}", dir.display())));
    }
    let uuid = match uuid {
        Some(u) => u.to_string(),
        None => new_uuid()?,
    };
    sys.write(Knob::Create, &dir.join("create"), &uuid)?;
    Ok(uuid)
}

fn remove(sys: &Sysfs, uuid: &str) -> Result<()> {
    sys.vgpu_parent(uuid)?;
    sys.write(Knob::Remove, &sys.vgpu_dir(uuid).join("remove"), "1")
}

fn sched(sys: &Sysfs, a: &Args) -> Result<()> {
    let knobs = [
        ("--policy", "sched_policy", Knob::Policy),
        ("--period-us", "sched_period_us", Knob::Period),
        ("--band-wait-us", "band_wait_us", Knob::BandWait),
    ];
    let setting = knobs.iter().any(|(f, _, _)| a.has(f));
    let target = if setting { Some(pick_gpu(sys, a.value("--parent"), None)?) } else { None };
    for (flag, file, knob) in knobs {
        let (Some(v), Some(pci)) = (a.value(flag), &target) else { continue };
        let path = sys.gpu_attr(pci, file);
        if !path.exists() {
            return Err(Error::Msg(format!(
                "this gpuvm.ko has no scheduler knob {file} (no {}): {flag} cannot be set",
                path.display()
            )));
        }
        sys.write(knob, &path, v)?;
    }
    for w in a.values("--weight") {
        let Some((uuid, weight)) = w.split_once('=') else {
            return Err(Error::Usage(format!("--weight takes UUID=WEIGHT, not '{w}'")));
        };
        sys.vgpu_parent(uuid)?;
        sys.write(Knob::Weight, &sys.vgpu_attr(uuid, "weight"), weight)?;
    }
    let gpus = match target.as_deref().or(a.value("--parent")) {
        Some(p) => vec![sys.gpu(&pick_gpu(sys, Some(p), None)?)?],
        None => sys.gpus()?,
    };
    if gpus.is_empty() {
        println!("{}", no_gpu(sys));
    }
    for g in &gpus {
        println!("GPU {}", g.pci);
        match g.sched() {
            Some(knobs) => {
                for (k, v) in knobs {
                    if k == "sched_policy" {
                        println!("  policy: {} (sched_policy: {v})", sysfs::active_policy(&v));
                    } else {
                        println!("  {k}: {v}");
                    }
                }
            }
            None => println!("  scheduler: {}", sched_line(sys, g)),
        }
        let total: u64 = g.vgpus.iter().filter_map(|v| v.num("weight")).sum();
        if g.vgpus.is_empty() {
            println!("  no vGPUs");
            continue;
        }
        println!("  {:<36} {:<8} {:>6} {:>6}", "UUID", "TYPE", "WEIGHT", "SHARE");
        for v in &g.vgpus {
            let share = match v.num("weight") {
                Some(w) if total > 0 => format!("{:.1}%", 100.0 * w as f64 / total as f64),
                _ => "-".into(),
            };
            println!("  {:<36} {:<8} {:>6} {:>6}", v.uuid, v.text("type"), v.text("weight"), share);
        }
    }
    Ok(())
}

fn top(sys: &Sysfs, interval: Duration, iterations: Option<u64>) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut prev = top::Sample::take(sys)?;
    let mut i = 0;
    while iterations.is_none_or(|n| i < n) {
        std::thread::sleep(interval);
        let cur = top::Sample::take(sys)?;
        let frame = top::render(&top::rows(&prev, &cur), cur.at.duration_since(prev.at).as_secs_f64());
        let mut out = std::io::stdout().lock();
        // A terminal is redrawn in place; a pipe or file gets one frame after another.
        let _ = if tty {
            write!(out, "\x1b[H\x1b[2J{frame}")
        } else {
            write!(out, "{}{frame}", if i > 0 { "\n" } else { "" })
        };
        let _ = out.flush();
        prev = cur;
        i += 1;
    }
    Ok(())
}

fn stats(sys: &Sysfs, as_json: bool) -> Result<()> {
    let gpus = sys.gpus()?;
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    if as_json {
        let g: Vec<Value> = gpus
            .iter()
            .map(|g| {
                json!({
                    "pci": g.pci,
                    "counters": g.counters(),
                    "vgpus": g.vgpus.iter().map(|v| json!({
                        "uuid": v.uuid, "type": v.text("type"), "counters": v.counters(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({ "time_unix_ms": ms, "gpus": g }));
        return Ok(());
    }
    if gpus.is_empty() {
        println!("{}", no_gpu(sys));
    }
    for g in &gpus {
        let c: Vec<String> = g.counters().iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("GPU {}: {}", g.pci, c.join(" "));
        for v in &g.vgpus {
            let c: Vec<String> = v.counters().iter().map(|(k, n)| format!("{k}={n}")).collect();
            println!("  {} {} {}", v.uuid, v.text("type"), c.join(" "));
        }
    }
    Ok(())
}
