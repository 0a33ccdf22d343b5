//! gpuvm-hostile: a hostile guest for the isolation tests. It brings a gpuvm vGPU up with the
//! guest driver's library and then does what a well-behaved driver never does: page-table
//! entries outside its partition, writes to privileged registers, foreign channel ids in the
//! channel table, the runlist and the kick register, physical-mode copies, USERD pointers
//! rewritten a word at a time, address spaces beyond its host-pool quota. It also plays the
//! victim that holds a known pattern in its VRAM while an attacker runs.
//!
//! Every check prints `ok - ...` or `FAIL - ...`; the exit status is 1 if a check failed and
//! 2 if the run could not get that far. The vGPU's counters are read from its sysfs
//! directory (the binary runs in the host VM, next to the mdev).

use gpuvm_guest_driver::driver::{ChannelOpts, Gpu};
use gpuvm_guest_driver::hostile::{self, Checks, PatternHolder, Target};
use gpuvm_guest_driver::transport::vfio::{VfioPath, VfioTarget, VfioTransport};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: gpuvm-hostile --mdev UUID COMMAND [options]
commands:
  hold-pattern --mib N --ready FILE --release FILE
                  victim: fill N MiB of VRAM with a known pattern, write its guest VRAM
                  address to FILE, wait for the release FILE, check the pattern is intact
  pagetable --target ADDR
                  attacker: copy-engine reads and writes through VRAM PTEs at guest VRAM
                  ADDR (outside the partition) and a read through system-memory PTEs at
                  an IOVA never mapped; each must fault on its own channel
  registers       attacker: privileged BAR0 writes are emulated per vGPU or denied
  lazy-inflight [--naive]
                  a channel blocked on a semaphore acquire, a PTE moved plus a TLB flush,
                  then the CPU's release: the channel's write must reach the new page,
                  nothing the old one; with the channel idle a flush syncs nothing until
                  the doorbell (--naive: the module is in naive mode: the flush syncs)
  bar-remap --target ADDR
                  attacker (bar_remap on): BAR3 PTEs moved between its own pages plus a
                  flush show the new page through the same mapping; BAR3 PTEs naming guest
                  VRAM ADDR (outside the partition), system memory or a read-only page are
                  refused: the mmapped access dies with SIGBUS
  channels --foreign CHID
                  attacker: channel CHID (not its own) in the channel table, the kick
                  register and the runlist is refused
  physical-copy --target ADDR
                  attacker: copy-engine copies in physical addressing mode (its RAMFC asks
                  for the physical-copy gate) reading and writing host VRAM ADDR (a victim's
                  pattern), reading and writing host VRAM 0 (the host's BAR3 instance block)
                  and reading system memory; each must raise a PBDMA error on its own
                  channel and move nothing
  pointers --target ADDR
                  attacker: rewrite its bound channel's USERD words in its instance block
                  one word at a time (PRAMIN) to guest VRAM ADDR (a page whose host address
                  needs a carry into the high word) and to values outside its partition,
                  preempting its channel and submitting after each word: the channel must
                  keep working on the last valid whole USERD page (seen from the GPU's
                  GP_GET write-back) or fault on itself
  exhaust [--ready FILE --release FILE]
                  attacker: one more channel on each of up to 15 address spaces whose
                  shadows need far more than its host-pool quota (256 PDEs with page
                  tables each): one must be refused with a CHAN_TABLE_ERROR, and a full
                  small-page table it then adds to its VM must get no shadow (a copy
                  through it faults on its own channel; one added before worked); with
                  --ready/--release it holds everything it got between writing FILE and
                  the release file appearing
  runaway         attacker: an endless copy (one page over and over, 2^32-1 lines) that holds
                  the copy engine; the host's watchdog must stop it: SCHED_ERROR
                  CTXSW_TIMEOUT in its PFIFO, its fence never passes, its page unwritten
                  afterwards; prints how long it ran
  teardown [--how unbind|reset|pfifo-off|close|unmap]
                  attacker: an endless copy into its own system-memory page, then its
                  channel unbound, a VFIO_DEVICE_RESET, PFIFO off in PMC_ENABLE, the
                  device closed, or the page unmapped (default: the first three, one after
                  the other); the page must stay unwritten afterwards (close, unmap:
                  checked by the host's log)
  leave-pattern --mib N [--reset]
                  old tenant: fill N MiB of VRAM with the pattern and close the device
                  without clearing it (with --reset: after a VFIO_DEVICE_RESET); prints
                  'pattern at guest VRAM ADDR'
  leftover --mib N [--at ADDR]
                  new tenant: allocate N MiB (at guest VRAM ADDR, where the old tenant's
                  buffer was) and read it back: no word may hold the pattern";

/// How long the victim waits for the release file.
const HOLD_TIMEOUT: Duration = Duration::from_secs(240);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Checks::default();
    match run(&args, &mut c) {
        Ok(()) => {
            println!("gpuvm-hostile: {} passed, {} failed", c.passed, c.failed);
            if c.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            println!("gpuvm-hostile: error: {e} ({} passed, {} failed so far)", c.passed, c.failed);
            ExitCode::from(2)
        }
    }
}

/// The vGPU under test: its device and its sysfs counters.
struct Vgpu {
    uuid: String,
}

impl Target for Vgpu {
    fn counter(&self, name: &str) -> Result<u64, String> {
        let p = format!("/sys/bus/mdev/devices/{}/gpuvm/{name}", self.uuid);
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        s.trim().parse().map_err(|e| format!("{p}: {e}"))
    }

    fn open_opts(&self, opts: ChannelOpts) -> Result<Gpu, String> {
        let t = VfioTransport::open(VfioTarget::Mdev(self.uuid.clone()), VfioPath::Auto).map_err(|e| format!("open: {e}"))?;
        Gpu::open_opts(Box::new(t), 0, true, opts).map_err(|e| format!("init: {e}"))
    }
}

fn run(args: &[String], c: &mut Checks) -> Result<(), String> {
    let mut uuid = None;
    let mut cmd = None;
    let (mut mib, mut ready, mut release, mut target, mut foreign) = (16u64, None, None, None, None);
    let (mut at, mut reset, mut how, mut naive) = (None, false, None, false);
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<String>, o: &str| it.next().cloned().ok_or(format!("{o} needs a value\n{USAGE}"));
    let num = |s: String, o: &str| -> Result<u64, String> {
        let r = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        };
        r.map_err(|e| format!("{o} {s}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mdev" => uuid = Some(val(&mut it, a)?),
            "--mib" => mib = num(val(&mut it, a)?, a)?,
            "--ready" => ready = Some(val(&mut it, a)?),
            "--release" => release = Some(val(&mut it, a)?),
            "--target" => target = Some(num(val(&mut it, a)?, a)?),
            "--foreign" => foreign = Some(num(val(&mut it, a)?, a)? as u32),
            "--at" => at = Some(num(val(&mut it, a)?, a)?),
            "--reset" => reset = true,
            "--naive" => naive = true,
            "--how" => how = Some(val(&mut it, a)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            w if !w.starts_with('-') && cmd.is_none() => cmd = Some(w.to_string()),
            o => return Err(format!("unexpected argument {o}\n{USAGE}")),
        }
    }
    let v = Vgpu { uuid: uuid.ok_or(format!("no --mdev given\n{USAGE}"))? };
    let need = |o: Option<String>, n: &str| o.ok_or(format!("{n} needed\n{USAGE}"));
    match cmd.as_deref() {
        Some("hold-pattern") => hold_pattern(&v, c, mib, &need(ready, "--ready")?, &need(release, "--release")?),
        Some("pagetable") => hostile::pagetable(&v, c, target.ok_or(format!("--target needed\n{USAGE}"))?),
        Some("registers") => hostile::registers(&v, c),
        Some("lazy-inflight") => hostile::lazy_in_flight(&v, c, !naive),
        Some("bar-remap") => hostile::bar_remap(&v, c, target.ok_or(format!("--target needed\n{USAGE}"))?),
        Some("channels") => hostile::channels(&v, c, foreign.ok_or(format!("--foreign needed\n{USAGE}"))?),
        Some("physical-copy") => hostile::physical_copy(&v, c, target.ok_or(format!("--target needed\n{USAGE}"))?),
        Some("pointers") => hostile::pointers(&v, c, target.ok_or(format!("--target needed\n{USAGE}"))?),
        Some("exhaust") => hostile::exhaust(&v, c, |_| match (&ready, &release) {
            (Some(r), Some(rel)) => hold(r, rel),
            (None, None) => Ok(()),
            _ => Err(format!("--ready and --release go together\n{USAGE}")),
        }),
        Some("leave-pattern") => {
            let addr = hostile::leave_pattern(&v, c, mib, reset)?;
            println!("pattern at guest VRAM {addr:#x}");
            Ok(())
        }
        Some("leftover") => hostile::leftover(&v, c, mib, at).map(|_| ()),
        Some("runaway") => {
            let took = hostile::runaway(&v, c)?;
            println!("runaway: stopped {:.2} s after its first write", took.as_secs_f64());
            Ok(())
        }
        Some("teardown") => {
            let all = [hostile::Teardown::Unbind, hostile::Teardown::Reset, hostile::Teardown::PfifoOff];
            let list: Vec<hostile::Teardown> = match how.as_deref() {
                None => all.to_vec(),
                Some("unbind") => vec![hostile::Teardown::Unbind],
                Some("reset") => vec![hostile::Teardown::Reset],
                Some("pfifo-off") => vec![hostile::Teardown::PfifoOff],
                Some("close") => vec![hostile::Teardown::Close],
                Some("unmap") => vec![hostile::Teardown::Unmap],
                Some(o) => return Err(format!("--how {o}: not unbind, reset, pfifo-off, close or unmap\n{USAGE}")),
            };
            list.into_iter().try_for_each(|h| hostile::teardown(&v, c, h))
        }
        _ => Err(format!("no or unknown command\n{USAGE}")),
    }
}

/// Fill `mib` MiB of VRAM with the pattern, publish its guest VRAM address in `ready`, hold
/// it until `release` exists, and check that no word changed meanwhile.
fn hold_pattern(v: &Vgpu, c: &mut Checks, mib: u64, ready: &str, release: &str) -> Result<(), String> {
    let holder = PatternHolder::fill(v, c, mib)?;
    publish(ready, &format!("{:#x}\n", holder.vram()))?;
    wait_release(release)?;
    holder.verify(c)
}

/// Writes `text` to `path` atomically (a waiter never sees it half written).
fn publish(path: &str, text: &str) -> Result<(), String> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
}

/// Waits (bounded) until `release` exists.
fn wait_release(release: &str) -> Result<(), String> {
    let start = Instant::now();
    while !Path::new(release).exists() {
        if start.elapsed() > HOLD_TIMEOUT {
            return Err(format!("{release} did not appear within {HOLD_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Says it is ready in `ready`, then waits for `release`.
fn hold(ready: &str, release: &str) -> Result<(), String> {
    publish(ready, "ready\n")?;
    wait_release(release)
}
