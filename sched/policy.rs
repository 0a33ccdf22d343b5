// SPDX-License-Identifier: GPL-2.0
//! What a scheduling policy is: something that hears the scheduler's events and, when the GPU
//! is free and work is queued, says whose submission goes next or how long to hold the GPU.
//!
//! A policy keeps only its own decision state (credit, measured utilisation); the facts
//! (present vGPUs, weights, queues, the running submission) are in the [`Account`], which the
//! [`super::scheduler::Scheduler`] updates *before* it tells the policy, so a policy always
//! sees the state after the event. Before it applies any event, the scheduler first calls
//! [`Policy::advance`] with the account as it was, so time-driven state (credit replenished at
//! period boundaries) is brought up to `now` from the facts that held meanwhile. Policies
//! never fail: any event is legal for them, and an answer that does not fit the account is
//! overridden by the scheduler.

use super::account::{Account, Ns, VgpuId};
use super::knobs::{BandWait, Period, PolicyKind};

/// What to do with the GPU now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward the oldest queued submission of this vGPU (the scheduler counts it as running).
    Run(VgpuId),
    /// Leave the GPU idle until this time (or until the next doorbell), then ask again. Only
    /// BAND says this, for at most its `band_wait`.
    WaitUntil(Ns),
    /// Nothing is queued: ask again at the next doorbell.
    Idle,
    /// A submission runs: ask again at its completion (Fermi does not preempt).
    Busy,
}

/// A scheduling policy. All methods but `pick` default to doing nothing.
pub trait Policy {
    /// The sysfs name of the policy.
    fn kind(&self) -> PolicyKind;

    /// Time has passed until `now`; nothing changed meanwhile but what `acct` shows. Called
    /// before every other method, with the account from before that method's event.
    fn advance(&mut self, _acct: &Account, _now: Ns) {}

    /// `v` now exists (with its weight in `acct`).
    fn add(&mut self, _acct: &Account, _v: VgpuId, _now: Ns) {}

    /// `v` is gone, its queued submissions dropped.
    fn remove(&mut self, _acct: &Account, _v: VgpuId, _now: Ns) {}

    /// `v` rang a doorbell (queued or merged in `acct`).
    fn submit(&mut self, _acct: &Account, _v: VgpuId, _now: Ns) {}

    /// `v`'s submission completed after `gpu_time_ns` on the GPU; the GPU is free.
    fn complete(&mut self, _acct: &Account, _v: VgpuId, _gpu_time_ns: Ns, _now: Ns) {}

    /// `v`'s weight changed (the new one is in `acct`).
    fn set_weight(&mut self, _acct: &Account, _v: VgpuId, _now: Ns) {}

    /// The replenish period changed.
    fn set_period(&mut self, _acct: &Account, _period: Period, _now: Ns) {}

    /// BAND's wait changed.
    fn set_band_wait(&mut self, _acct: &Account, _wait: BandWait, _now: Ns) {}

    /// Called only when nothing runs and something is queued. Answers [`Decision::Run`] with a
    /// vGPU that has queued work, or [`Decision::WaitUntil`] a time after `now` and at most
    /// `band_wait` ahead; the scheduler replaces any other answer with the oldest submission.
    fn pick(&mut self, acct: &Account, now: Ns) -> Decision;
}
