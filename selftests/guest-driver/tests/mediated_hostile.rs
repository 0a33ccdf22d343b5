//! The hostile guest's checks (`gpuvm-hostile`) against vGPUs of the mediator on the
//! in-process model: an attacker, a neighbour holding a known pattern right above the
//! attacker's partition, and a victim running checked workloads throughout. Every check must
//! pass, the pattern must be intact and the victim's results correct.

use gpuvm_guest_driver::driver::{ChannelOpts, Gpu};
use gpuvm_guest_driver::hostile::{self, Checks, PatternHolder, Target};
use gpuvm_guest_driver::transport::mediated::{MediatedHost, VgpuShared};
use gpuvm_guest_driver::transport::Transport;
use gpuvm_guest_driver::workloads::{self, Opts, Size};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const VRAM_MIB: u64 = 512;

/// A mediated vGPU as the hostile checks see it.
struct Mediated<'a> {
    host: &'a MediatedHost,
    v: Arc<VgpuShared>,
}

impl Target for Mediated<'_> {
    fn open_opts(&self, opts: ChannelOpts) -> Result<Gpu, String> {
        let t = self.host.open(&self.v).map_err(|e| format!("open: {e}"))?;
        Gpu::open_opts(Box::new(t), 0, true, opts).map_err(|e| format!("init: {e}"))
    }
    fn counter(&self, name: &str) -> Result<u64, String> {
        let s = self.v.stats();
        Ok(match name {
            "faults" => s.faults,
            "pte_refused" => s.refused,
            "mmio_denied" => self.v.counters().denied.load(Ordering::Relaxed),
            "channels" => u64::from(self.v.slice().channels),
            other => return Err(format!("no counter {other}")),
        })
    }
}

/// Runs `attack` on an attacker vGPU while a victim vGPU runs checked workloads in a loop;
/// returns the checks and how many victim runs completed (all must be correct).
fn under_attack(attack: impl FnOnce(&MediatedHost, &Mediated<'_>, &mut Checks)) -> (Checks, u32) {
    let host = MediatedHost::new(VRAM_MIB).expect("host bring-up");
    let attacker = Mediated { host: &host, v: host.create(4).expect("attacker") };
    let victim = host.create(4).expect("victim");
    let stop = AtomicBool::new(false);
    let mut c = Checks::default();
    let runs = std::thread::scope(|s| {
        let t = s.spawn(|| {
            let open = || -> io::Result<Box<dyn Transport>> { Ok(Box::new(host.open(&victim)?)) };
            let mut runs = 0;
            // At least one run, and runs until the attack is over.
            loop {
                for name in ["mmul", "hotspot"] {
                    let r = workloads::run(name, &open, &Opts { size: Size::Small, ..Opts::default() });
                    assert!(r.ok, "victim {name} during the attack: {}", r.to_json());
                    runs += 1;
                }
                if stop.load(Ordering::Relaxed) {
                    break runs;
                }
            }
        });
        attack(&host, &attacker, &mut c);
        stop.store(true, Ordering::Relaxed);
        t.join().expect("victim thread")
    });
    assert!(host.host_errors().is_empty(), "host errors {:?}", host.host_errors());
    (c, runs)
}

#[test]
fn mediated_hostile_pagetable() {
    let (c, runs) = under_attack(|host, a, c| {
        // The pattern holder sits right above the attacker in host VRAM.
        let holder = Mediated { host, v: host.create(4).expect("pattern holder") };
        let (ab, bb) = (a.v.slice().vram_base, holder.v.slice().vram_base);
        assert!(bb >= ab + a.v.slice().vram_size, "the holder is above the attacker");
        let p = PatternHolder::fill(&holder, c, 16).expect("fill the pattern");
        // The attacker's guest address that would be the holder's buffer (+1 MiB) if PTEs
        // were not confined: guest x of the attacker is host ab + x.
        let target = (bb - ab) + p.vram() + (1 << 20);
        hostile::pagetable(a, c, target).expect("attack ran");
        p.verify(c).expect("verify the pattern");
        assert!(a.counter("faults").unwrap() >= 4 && a.counter("pte_refused").unwrap() >= 4);
        assert_eq!(holder.counter("faults").unwrap(), 0, "the holder saw no fault");
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 18, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
}

#[test]
fn mediated_hostile_registers() {
    let (c, runs) = under_attack(|_, a, c| hostile::registers(a, c).expect("attack ran"));
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 15, "{} checks ran", c.passed);
    assert!(runs >= 2);
}

#[test]
fn mediated_hostile_channels() {
    let (c, runs) = under_attack(|_, a, c| {
        let foreign = a.v.slice().channels + 3;
        hostile::channels(a, c, foreign).expect("attack ran")
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 10, "{} checks ran", c.passed);
    assert!(runs >= 2);
}

#[test]
fn mediated_hostile_physical_copy() {
    let (c, runs) = under_attack(|host, a, c| {
        let holder = Mediated { host, v: host.create(4).expect("pattern holder") };
        let p = PatternHolder::fill(&holder, c, 16).expect("fill the pattern");
        // The holder's buffer (+1 MiB) as a host VRAM address: what a physical copy names.
        let target = holder.v.slice().vram_base + p.vram() + (1 << 20);
        let vram = host.gpu().vram().clone();
        let host_inst = |vram: &gf100_model::mem::HostMemory| {
            let mut b = vec![0u8; 0x1000];
            assert!(vram.read(0, &mut b));
            b
        };
        let before = host_inst(&vram);
        hostile::physical_copy(a, c, target).expect("attack ran");
        p.verify(c).expect("verify the pattern");
        c.check(host_inst(&vram) == before, "host VRAM 0 (the host's BAR3 instance block) unchanged");
        // Refused before any translation: no MMU fault, on the attacker or the holder.
        assert_eq!(a.counter("faults").unwrap(), 0, "the attacker saw no MMU fault");
        assert_eq!(holder.counter("faults").unwrap(), 0, "the holder saw no fault");
    });
    assert_eq!(c.failed, 0, "{} hostile checks failed", c.failed);
    assert!(c.passed >= 16, "{} checks ran", c.passed);
    assert!(runs >= 2, "the victim made progress ({runs} runs)");
}
