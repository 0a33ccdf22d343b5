// SPDX-License-Identifier: GPL-2.0
//! The scheduler of one GPU as the mediator drives it: the account plus the active policy,
//! switchable at any time.
//!
//! The mediator keeps each vGPU's doorbells in a queue and calls:
//! - [`Scheduler::submit`] at a doorbell: [`Submitted::Queued`] appends it, `Merged` folds it
//!   into the vGPU's newest queued doorbell. Then it asks [`Scheduler::pick`].
//! - [`Scheduler::pick`] whenever the GPU may be free (after a doorbell, a completion, or a
//!   wait's timer): `Run(v)` forwards `v`'s oldest queued doorbell to its host channel,
//!   `WaitUntil(t)` arms a timer for `t`, `Idle` and `Busy` do nothing.
//! - [`Scheduler::complete`] at the completion interrupt of the forwarded submission, with
//!   the GPU time it took, then `pick` again.
//!
//! One submission runs at a time: Fermi cannot preempt a kernel, so a scheduler can only
//! choose between submissions, and measuring a vGPU's GPU time needs its work alone on the
//! GPU. The scheduler holds no lock and never sleeps; the caller serialises the calls.
//!
//! The scheduler checks the policy: it asks only when the GPU is free and work is queued,
//! and it replaces an answer naming a vGPU with nothing queued, or a wait that is not in
//! `(now, now + band_wait]`, with the oldest queued submission. Whatever the policy, queued
//! work is never lost and the GPU idles at most `band_wait` at a time while work waits.

use super::account::{Account, Ns, Removed, SchedError, Submitted, VgpuId, VgpuStats};
use super::band::Band;
use super::credit::Credit;
use super::fifo::Fifo;
use super::knobs::{BandWait, Knobs, Period, PolicyKind, Weight};
use super::policy::{Decision, Policy};

/// The active policy (no allocation: the largest is a few hundred bytes).
#[derive(Clone, Debug)]
enum Active {
    Fifo(Fifo),
    Credit(Credit),
    Band(Band),
}

impl Active {
    const fn new(kind: PolicyKind, knobs: &Knobs, now: Ns) -> Self {
        match kind {
            PolicyKind::Fifo => Self::Fifo(Fifo),
            PolicyKind::Credit => Self::Credit(Credit::new(knobs, now)),
            PolicyKind::Band => Self::Band(Band::new(knobs, now)),
        }
    }

    fn get(&mut self) -> &mut dyn Policy {
        match self {
            Self::Fifo(p) => p,
            Self::Credit(p) => p,
            Self::Band(p) => p,
        }
    }
}

/// The scheduler of one GPU.
#[derive(Clone)]
pub struct Scheduler {
    acct: Account,
    knobs: Knobs,
    active: Active,
}

impl Scheduler {
    /// No vGPUs yet (`const`: a caller without room for it on its stack can have it built
    /// at compile time and copied into place).
    pub const fn new(kind: PolicyKind, knobs: Knobs, now: Ns) -> Self {
        Self { acct: Account::new(), knobs, active: Active::new(kind, &knobs, now) }
    }

    pub fn policy(&self) -> PolicyKind {
        match &self.active {
            Active::Fifo(_) => PolicyKind::Fifo,
            Active::Credit(_) => PolicyKind::Credit,
            Active::Band(_) => PolicyKind::Band,
        }
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs
    }

    pub fn account(&self) -> &Account {
        &self.acct
    }

    pub fn stats(&self, v: VgpuId) -> Option<VgpuStats> {
        self.acct.stats(v)
    }

    /// `v`'s credit under CREDIT or BAND (ns of GPU time; for sysfs and tests).
    pub fn credit_of(&self, v: VgpuId) -> Option<i64> {
        match &self.active {
            Active::Fifo(_) => None,
            Active::Credit(p) => Some(p.ledger().credit(v)),
            Active::Band(p) => Some(p.ledger().credit(v)),
        }
    }

    /// Switches policy. Queued and running work stays in the account; the new policy starts
    /// with fresh state (credit 0 for everyone), as at boot. Switching to the active policy
    /// changes nothing.
    pub fn set_policy(&mut self, kind: PolicyKind, now: Ns) {
        if kind == self.policy() {
            return;
        }
        self.active = Active::new(kind, &self.knobs, now);
        let p = self.active.get();
        for v in self.acct.present() {
            p.add(&self.acct, v, now);
        }
    }

    pub fn add(&mut self, v: VgpuId, weight: Weight, now: Ns) -> Result<(), SchedError> {
        self.active.get().advance(&self.acct, now);
        self.acct.add(v, weight)?;
        self.active.get().add(&self.acct, v, now);
        Ok(())
    }

    /// Removes `v` and what it had queued. Its running submission, if any, is forgotten: the
    /// mediator stops the channel first, and a late `complete` for it is refused.
    pub fn remove(&mut self, v: VgpuId, now: Ns) -> Result<Removed, SchedError> {
        self.active.get().advance(&self.acct, now);
        let r = self.acct.remove(v)?;
        self.active.get().remove(&self.acct, v, now);
        Ok(r)
    }

    pub fn set_weight(&mut self, v: VgpuId, weight: Weight, now: Ns) -> Result<(), SchedError> {
        self.active.get().advance(&self.acct, now);
        self.acct.set_weight(v, weight)?;
        self.active.get().set_weight(&self.acct, v, now);
        Ok(())
    }

    pub fn set_period(&mut self, period: Period, now: Ns) {
        self.active.get().advance(&self.acct, now);
        self.knobs.period = period;
        self.active.get().set_period(&self.acct, period, now);
    }

    pub fn set_band_wait(&mut self, wait: BandWait, now: Ns) {
        self.active.get().advance(&self.acct, now);
        self.knobs.band_wait = wait;
        self.active.get().set_band_wait(&self.acct, wait, now);
    }

    /// A doorbell of `v`.
    pub fn submit(&mut self, v: VgpuId, now: Ns) -> Result<Submitted, SchedError> {
        self.active.get().advance(&self.acct, now);
        let s = self.acct.submit(v, now)?;
        self.active.get().submit(&self.acct, v, now);
        Ok(s)
    }

    /// `v`'s running submission completed after `gpu_time_ns` on the GPU.
    pub fn complete(&mut self, v: VgpuId, gpu_time_ns: Ns, now: Ns) -> Result<(), SchedError> {
        self.active.get().advance(&self.acct, now);
        self.acct.complete(v, gpu_time_ns, now)?;
        self.active.get().complete(&self.acct, v, gpu_time_ns, now);
        Ok(())
    }

    /// What the GPU does now. `Run(v)` means `v`'s oldest queued submission is dispatched:
    /// the account counts it as running until [`Scheduler::complete`].
    pub fn pick(&mut self, now: Ns) -> Decision {
        if self.acct.running().is_some() {
            return Decision::Busy;
        }
        let Some(oldest) = self.acct.oldest_queued() else {
            return Decision::Idle;
        };
        let p = self.active.get();
        p.advance(&self.acct, now);
        let v = match p.pick(&self.acct, now) {
            Decision::Run(v) if self.acct.queued(v) > 0 => v,
            Decision::WaitUntil(t) if t > now && t <= now.saturating_add(self.knobs.band_wait.ns()) => {
                return Decision::WaitUntil(t)
            }
            _ => oldest,
        };
        match self.acct.dispatch(v, now) {
            Some(()) => Decision::Run(v),
            // Unreachable: nothing runs and `v` has work queued.
            None => Decision::Idle,
        }
    }
}
