// SPDX-License-Identifier: GPL-2.0
//! CREDIT: each vGPU earns GPU time in proportion to its weight every period and pays for
//! the GPU time it uses; a vGPU that is out of credit waits behind those that are not.
//!
//! The [`Ledger`] is shared with BAND:
//! - **Earning.** At each period boundary, the GPU time that submissions ran in the period
//!   (dispatch to completion, the running one up to the boundary) is split by weight among
//!   the vGPUs that were active in it (had work queued or running, or rang a doorbell). Only
//!   active vGPUs earn, so the share of an idle one goes to those that can use it (as in
//!   Xen). Earning the time that is charged, not the period's length `P`, keeps credit
//!   zero-sum: the host's own steps between submissions (forwarding a doorbell, noticing a
//!   completion) are GPU time nobody is charged, and had each period handed out a whole `P`
//!   the surplus would pile up until every backlogged vGPU sat at the cap with the same credit
//!   and the weights stopped mattering (8 vGPUs at 1:2:4:8, 2 ms jobs, 0.3 ms uncharged after
//!   each: 14% share error; `selftests/sched-tests/tests/uncharged_gaps.rs`). Counting the
//!   running submission up to the boundary, rather than its whole charge at its completion,
//!   keeps the earning as smooth as a fixed `P` when kernels span boundaries.
//! - **Paying.** A completion charges the GPU time of the submission, after the fact: Fermi
//!   cannot preempt a kernel, so a vGPU can overdraw by one submission.
//! - **Bounds.** Credit stays within `[-P, +P]`. The cap is why an idle or lightly loaded vGPU
//!   cannot bank GPU time: it returns with at most one period in hand. The floor forgives the
//!   debt of a kernel longer than a period, which Gdev also does (its ±30 ms reset).
//!
//! Among queued vGPUs CREDIT takes the one with the most credit, ties to the one that ran
//! least recently. Xen and GPUvm take turns in list order among those with credit; with
//! non-preemptive submissions of unequal length that hands a long-kernel vGPU more time per
//! turn, and the error is only corrected period by period. Taking the richest keeps every
//! backlogged vGPU within about one submission of what it earned by the end of each period,
//! and a vGPU that has credit still always goes before one that has none.
//!
//! Replenishing is lazy: [`Policy::advance`] catches up with the period boundaries that
//! passed before each event, so no timer is needed.

use super::account::{Account, Ns, VgpuId, MAX_VGPUS};
use super::knobs::{Knobs, Period, PolicyKind};
use super::policy::{Decision, Policy};

/// Per-vGPU credit in ns of GPU time, replenished each period.
#[derive(Clone, Debug)]
pub struct Ledger {
    credit: [i64; MAX_VGPUS],
    /// Rang a doorbell, ran or completed since the last boundary.
    touched: [bool; MAX_VGPUS],
    /// GPU time submissions ran since the last boundary (completed ones; the running one is
    /// added at the boundary): what the next boundary hands out.
    busy: u64,
    period_ns: u64,
    last_boundary: Ns,
    next_boundary: Ns,
}

impl Ledger {
    /// Everyone at zero; the first period starts now.
    pub const fn new(period: Period, now: Ns) -> Self {
        let p = period.ns();
        Self { credit: [0; MAX_VGPUS], touched: [false; MAX_VGPUS], busy: 0, period_ns: p, last_boundary: now, next_boundary: now.saturating_add(p) }
    }

    /// The replenish period in ns.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// The most credit a vGPU can hold, and the most debt: one period of GPU time.
    pub fn cap(&self) -> i64 {
        i64::try_from(self.period_ns).unwrap_or(i64::MAX)
    }

    pub fn credit(&self, v: VgpuId) -> i64 {
        self.credit.get(v.index()).copied().unwrap_or(0)
    }

    /// The start of the current period.
    pub fn last_boundary(&self) -> Ns {
        self.last_boundary
    }

    /// `v` did something this period (it counts as active at the next boundary).
    pub fn touch(&mut self, v: VgpuId) {
        if let Some(t) = self.touched.get_mut(v.index()) {
            *t = true;
        }
    }

    /// A new or removed vGPU starts from nothing.
    pub fn reset(&mut self, v: VgpuId) {
        if let (Some(c), Some(t)) = (self.credit.get_mut(v.index()), self.touched.get_mut(v.index())) {
            *c = 0;
            *t = false;
        }
    }

    /// `v`'s submission completed at `now` having used `ns` of GPU time (it ran from
    /// `now - ns`; the part before the current period was counted at that boundary).
    pub fn charge(&mut self, v: VgpuId, ns: Ns, now: Ns) {
        let floor = -self.cap();
        self.busy = self.busy.saturating_add(ns.min(now.saturating_sub(self.last_boundary)));
        if let Some(c) = self.credit.get_mut(v.index()) {
            let ns = i64::try_from(ns).unwrap_or(i64::MAX);
            *c = c.saturating_sub(ns).max(floor);
        }
    }

    /// A new period length; the current period ends at most `period` after it began, and
    /// credit is clipped to the new cap.
    pub fn set_period(&mut self, period: Period) {
        self.period_ns = period.ns();
        self.next_boundary = self.next_boundary.min(self.last_boundary.saturating_add(self.period_ns));
        let cap = self.cap();
        for c in &mut self.credit {
            *c = (*c).clamp(-cap, cap);
        }
    }

    /// Replenishes for every period boundary up to `now`; returns how many passed.
    pub fn advance(&mut self, acct: &Account, now: Ns) -> u64 {
        if now < self.next_boundary || self.period_ns == 0 {
            return 0;
        }
        let periods = 1 + (now - self.next_boundary) / self.period_ns;
        // `advance` runs before each event, so every completion counted in `busy` happened
        // before the boundary just passed: the first boundary hands out `busy` plus the
        // running submission's time up to it, to the vGPUs active in that period. The later
        // periods saw no event: only a submission running all along used them, and only the
        // vGPUs that had work all along earn them.
        let touched = self.touched;
        let running = acct.running();
        let running_vgpu = running.map(|r| r.vgpu);
        let busy = |v: VgpuId| acct.queued(v) > 0 || running_vgpu == Some(v);
        let first = self.next_boundary;
        let mut gpu_ns = core::mem::take(&mut self.busy);
        if let Some(r) = running {
            gpu_ns = gpu_ns.saturating_add(first.saturating_sub(r.since.max(self.last_boundary)));
        }
        self.replenish(acct, |v| touched.get(v.index()).copied().unwrap_or(false) || busy(v), gpu_ns);
        if periods > 1 && running.is_some() {
            self.replenish(acct, busy, self.period_ns.saturating_mul(periods - 1));
        }
        self.touched = [false; MAX_VGPUS];
        self.last_boundary = self.next_boundary.saturating_add((periods - 1).saturating_mul(self.period_ns));
        self.next_boundary = self.last_boundary.saturating_add(self.period_ns);
        periods
    }

    /// Splits `gpu_ns` of earning by weight among the present vGPUs for which `active`
    /// holds (the remainder of the division is dropped: at most a few ns per vGPU).
    fn replenish(&mut self, acct: &Account, active: impl Fn(VgpuId) -> bool, gpu_ns: u64) {
        let weight = |v: VgpuId| if active(v) { u64::from(acct.weight_or_zero(v)) } else { 0 };
        let total: u64 = VgpuId::all().map(weight).sum();
        if total == 0 || gpu_ns == 0 {
            return;
        }
        let cap = self.cap();
        for v in VgpuId::all() {
            let w = weight(v);
            if w == 0 {
                continue;
            }
            // w ≤ 100 and gpu_ns is what one period's completions were charged (seconds at
            // most): the product is far below u64's range; saturating all the same.
            let earned = gpu_ns.saturating_mul(w) / total;
            let earned = i64::try_from(earned).unwrap_or(i64::MAX);
            if let Some(c) = self.credit.get_mut(v.index()) {
                *c = c.saturating_add(earned).min(cap);
            }
        }
    }
}

/// Among queued vGPUs, the one with the lowest `rank`, then the most credit, then the one
/// dispatched least recently. `None` if nothing is queued.
pub fn richest(acct: &Account, ledger: &Ledger, rank: impl Fn(VgpuId) -> u8) -> Option<VgpuId> {
    acct.queued_vgpus()
        .min_by_key(|&v| (rank(v), core::cmp::Reverse(ledger.credit(v)), acct.last_dispatch(v)))
}

/// The CREDIT policy.
#[derive(Clone, Debug)]
pub struct Credit {
    ledger: Ledger,
}

impl Credit {
    pub const fn new(knobs: &Knobs, now: Ns) -> Self {
        Self { ledger: Ledger::new(knobs.period, now) }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

impl Policy for Credit {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Credit
    }

    fn advance(&mut self, acct: &Account, now: Ns) {
        self.ledger.advance(acct, now);
    }

    fn add(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.ledger.reset(v);
    }

    fn remove(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.ledger.reset(v);
    }

    fn submit(&mut self, _acct: &Account, v: VgpuId, _now: Ns) {
        self.ledger.touch(v);
    }

    fn complete(&mut self, _acct: &Account, v: VgpuId, gpu_time_ns: Ns, now: Ns) {
        self.ledger.charge(v, gpu_time_ns, now);
        self.ledger.touch(v);
    }

    fn set_period(&mut self, _acct: &Account, period: Period, _now: Ns) {
        self.ledger.set_period(period);
    }

    fn pick(&mut self, acct: &Account, _now: Ns) -> Decision {
        richest(acct, &self.ledger, |_| 0).map_or(Decision::Idle, Decision::Run)
    }
}
