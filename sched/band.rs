// SPDX-License-Identifier: GPL-2.0
//! BAND (Gdev, Kato et al., USENIX ATC'12; GPUvm's default in 2014): CREDIT with two changes
//! for a GPU that cannot preempt.
//!
//! 1. **Utilisation-aware demotion.** Credit is charged in lumps after each completion and
//!    clipped at ±one period, so on its own it misjudges a vGPU whose kernels are long or
//!    irregular. BAND demotes a vGPU only when it is out of credit *and* over its share of
//!    the GPU measured over a longer window (Gdev's rule); a vGPU in debt but under its
//!    share keeps competing, by credit, with those not demoted. Within each of the two
//!    classes the order is CREDIT's (most credit, then least recently run). GPUvm's BAND
//!    also put every under-share vGPU before all others; that lets a vGPU returning from
//!    idle run alone until the window says it has caught up (several periods), whereas
//!    here its lead is bounded by credit, as under CREDIT.
//! 2. **A bounded wait.** When the GPU frees and the next candidate is over its share while
//!    the vGPU that just finished is under it, the GPU is held for up to `band_wait`. A guest
//!    with short kernels rings its next doorbell soon after it sees a completion; without
//!    the wait its next kernel would queue behind a long one of the over-share vGPU. The wait
//!    is taken at most once per completion, only if the finished vGPU has nothing queued,
//!    and ends at its next doorbell (it then runs), when the best candidate is no longer
//!    over its share, or at `band_wait` after the completion. It is BAND's only departure
//!    from work conservation (the "inserted idle" GPUvm's slides blame for BAND's
//!    throughput loss), bounded by `band_wait` per completion.
//!
//! Utilisation is the GPU time a vGPU completed over elapsed time, both decaying by 1/16 at
//! each period boundary: a window of about 16 periods (0.5 s at 30 ms; GPUvm sampled every
//! 500 ms, Gdev every 1 s). A vGPU's share is its weight over the weights of all present
//! vGPUs, as Gdev gives each virtual GPU a fixed bandwidth. Both are integers: a vGPU is over
//! its share when `used · W > elapsed · w`.

use super::account::{Account, Ns, VgpuId, MAX_VGPUS};
use super::credit::{richest, Ledger};
use super::knobs::{BandWait, Knobs, Period, PolicyKind};
use super::policy::{Decision, Policy};

/// Decay per period of the utilisation window: `x -= x >> DECAY_SHIFT`.
const DECAY_SHIFT: u32 = 4;
/// After this many periods without an event every window value has decayed to (almost) 0.
const DECAY_MAX_STEPS: u64 = 1024;

/// The GPU is held for `vgpu` until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiting {
    vgpu: VgpuId,
    until: Ns,
}

/// The BAND policy.
#[derive(Clone, Debug)]
pub struct Band {
    ledger: Ledger,
    /// Decayed GPU time per vGPU.
    used: [u64; MAX_VGPUS],
    /// Decayed elapsed time up to the last period boundary.
    elapsed: u64,
    wait_ns: u64,
    /// A completion happened and no wait was taken for it yet.
    chance: bool,
    waiting: Option<Waiting>,
}

impl Band {
    pub const fn new(knobs: &Knobs, now: Ns) -> Self {
        Self {
            ledger: Ledger::new(knobs.period, now),
            used: [0; MAX_VGPUS],
            elapsed: 0,
            wait_ns: knobs.band_wait.ns(),
            chance: false,
            waiting: None,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Whether `v` used more than its share of the GPU over the window ending at `now`.
    pub fn over_share(&self, acct: &Account, v: VgpuId, now: Ns) -> bool {
        let elapsed = self.elapsed.saturating_add(now.saturating_sub(self.ledger.last_boundary()));
        let used = self.used.get(v.index()).copied().unwrap_or(0);
        used.saturating_mul(u64::from(acct.present_weight())) > elapsed.saturating_mul(u64::from(acct.weight_or_zero(v)))
    }

    /// 1 if `v` is demoted (out of credit and over its share), else 0.
    fn rank(&self, acct: &Account, v: VgpuId, now: Ns) -> u8 {
        u8::from(self.ledger.credit(v) < 0 && self.over_share(acct, v, now))
    }

    fn forget(&mut self, v: VgpuId) {
        self.ledger.reset(v);
        if let Some(u) = self.used.get_mut(v.index()) {
            *u = 0;
        }
        if self.waiting.is_some_and(|w| w.vgpu == v) {
            self.waiting = None;
        }
    }
}

fn decay(x: u64) -> u64 {
    x - (x >> DECAY_SHIFT)
}

impl Policy for Band {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Band
    }

    fn advance(&mut self, acct: &Account, now: Ns) {
        let periods = self.ledger.advance(acct, now);
        let p = self.ledger.period_ns();
        for _ in 0..periods.min(DECAY_MAX_STEPS) {
            self.elapsed = decay(self.elapsed.saturating_add(p));
            for u in &mut self.used {
                *u = decay(*u);
            }
        }
    }

    fn add(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.forget(v);
    }

    fn remove(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.forget(v);
    }

    fn submit(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.ledger.touch(v);
    }

    fn complete(&mut self, _acct: &Account, v: VgpuId, gpu_time_ns: Ns, now: Ns) {
        self.ledger.charge(v, gpu_time_ns, now);
        self.ledger.touch(v);
        if let Some(u) = self.used.get_mut(v.index()) {
            *u = u.saturating_add(gpu_time_ns);
        }
        self.chance = true;
        self.waiting = None;
    }

    fn set_period(&mut self, _acct: &Account, period: Period, _now: Ns) {
        self.ledger.set_period(period);
    }

    fn set_band_wait(&mut self, _acct: &Account, wait: BandWait, _now: Ns) {
        self.wait_ns = wait.ns();
        self.waiting = None;
    }

    fn pick(&mut self, acct: &Account, now: Ns) -> Decision {
        let Some(next) = richest(acct, &self.ledger, |v| self.rank(acct, v, now)) else {
            return Decision::Idle;
        };
        if let Some(w) = self.waiting.take() {
            // The awaited vGPU rang: it gets the GPU, whatever its credit (it is under its
            // share). Otherwise hold only while the best candidate is over its share.
            if acct.queued(w.vgpu) > 0 {
                return Decision::Run(w.vgpu);
            }
            if now < w.until && self.over_share(acct, next, now) {
                self.waiting = Some(w);
                return Decision::WaitUntil(w.until);
            }
            return Decision::Run(next);
        }
        if core::mem::take(&mut self.chance) {
            if let Some(done) = acct.last_done() {
                let until = done.at.saturating_add(self.wait_ns);
                // Only for a vGPU with nothing queued: waiting for one that is queued but
                // not the best candidate would idle the GPU for nothing.
                if done.vgpu != next
                    && acct.queued(done.vgpu) == 0
                    && now < until
                    && acct.is_present(done.vgpu)
                    && self.over_share(acct, next, now)
                    && !self.over_share(acct, done.vgpu, now)
                {
                    self.waiting = Some(Waiting { vgpu: done.vgpu, until });
                    return Decision::WaitUntil(until);
                }
            }
        }
        Decision::Run(next)
    }
}
