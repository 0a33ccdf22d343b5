// SPDX-License-Identifier: GPL-2.0
//! The submission mechanism of one GPU: guest doorbells become queued submissions, and the
//! scheduler's policy (`sched/`) decides whose submission the host channel gets next.
//!
//! Host channels use host-owned USERD pages (`mediator.rs`), so a guest's GP_PUT reaches the
//! GPU only here: [`Dispatcher::submit`] records the doorbell (host channel, GP_PUT) in its
//! vGPU's queue and asks the [`Scheduler`]; when it picks a vGPU, that vGPU's oldest
//! submission is *forwarded*: its GP_PUT is written to the host USERD through the host
//! doorbell. While it runs and no other vGPU has work queued, further doorbells of the same
//! vGPU are forwarded at once and merged into it (a guest streaming short kernels keeps the
//! GPU busy without a scheduling round per kernel), for at most [`MERGE_WINDOW_DIV`] of a
//! period after its dispatch, so a vGPU cannot hold the GPU indefinitely by ringing, and never
//! while another vGPU waits (a merged doorbell lengthens the non-preemptible unit the others
//! wait behind).
//!
//! Completion is never busy-polled: [`Dispatcher::poll`] is called at the host's interrupts
//! (non-stall and semaphore interrupts, `host_gpu::service_interrupt`) and at the timer the
//! caller arms for the time [`Dispatcher::poll`] returns (BAND's wait, or a coarse fallback
//! for guests that raise no interrupt). A forwarded channel is done when its host GP_GET has
//! reached the forwarded GP_PUT (PFIFO writes GP_GET back once an entry has fully executed,
//! §8.7) and PFIFO has nothing pending for it (CHAN_TABLE STATE bit 28 PENDING, rnndb
//! `fifo/gf100_pfifo.xml`; pscnv tests `0x1110` of the same word for "still busy"), or when
//! it cannot progress (unbound, not RUNNABLE or off the runlist: the guest disabled it; or
//! blocked on a semaphore acquire, STATE bit 4). The GPU time charged
//! is dispatch to completion. A submission that makes no progress for [`RUN_LIMIT_NS`] is given up on
//! (counted, charged): Fermi cannot preempt it, but the scheduler moves on and the hardware's
//! own timeslicing shares the GPU meanwhile (the watchdog bounds it further).
//!
//! Pure `core` logic over [`DispatchHost`] (the kernel implements it over the GPU's BARs, the
//! host tests over the in-process model). No lock, no sleep: the caller serialises calls.

use crate::gf100::{pfifo, userd};
use crate::host_gpu::{self, HostBars};
use crate::mediator::host_userd;
use crate::sched::account::{Ns, SchedError, Submitted, VgpuId, VgpuStats, MAX_VGPUS, QUEUE_DEPTH};
use crate::sched::knobs::{BandWait, Knobs, Period, PolicyKind, Weight};
use crate::sched::policy::Decision;
use crate::sched::scheduler::Scheduler;

const CHANNELS: usize = pfifo::CHANNELS as usize;

/// A running submission may take in the same vGPU's doorbells for `period / MERGE_WINDOW_DIV`
/// after its dispatch (3.75 ms at the default 30 ms period).
pub const MERGE_WINDOW_DIV: u64 = 8;
/// A submission whose channels' GP_GET has not moved for this long is given up on (charged,
/// counted in [`DispatchStats::given_up`]): 4 default periods. Counted from the last
/// progress, not from the dispatch: doorbells merged into a run lengthen it with work that
/// completes entry by entry, and a run that keeps completing entries is not stuck (a single
/// kernel longer than this is, for the scheduler's purposes; the watchdog bounds it).
pub const RUN_LIMIT_NS: Ns = 120_000_000;
/// Without an interrupt, completion is looked for this often while a submission runs (the
/// coarse fallback timer for guests that never raise a non-stall interrupt).
pub const FALLBACK_NS: Ns = 1_000_000;

/// What the dispatcher needs of the host GPU (host channel ids).
pub trait DispatchHost {
    /// Writes GP_PUT `put` into host channel `host_chid`'s host USERD page and rings it.
    fn forward(&mut self, host_chid: u32, put: u32);
    /// GP_GET in the channel's host USERD page.
    fn gp_get(&self, host_chid: u32) -> u32;
    /// GP_PUT in the channel's host USERD page (what was last forwarded, or what the
    /// mediator set at bind).
    fn gp_put(&self, host_chid: u32) -> u32;
    /// The channel's CHAN_TABLE words (CHAN, STATE).
    fn chan(&self, host_chid: u32) -> (pfifo::ChanInst, pfifo::ChanState);
    /// Whether the channel is on the host runlist (PFIFO runs no other).
    fn listed(&self, _host_chid: u32) -> bool {
        true
    }
}

/// [`DispatchHost`] over the host GPU's BARs (BAR3 maps the reserved VRAM holding the host
/// USERD pages) and the host runlist, when the caller holds it.
pub struct BarsHost<'a, B: HostBars>(pub &'a B, pub Option<&'a host_gpu::HostRunlist>);

impl<B: HostBars> DispatchHost for BarsHost<'_, B> {
    fn listed(&self, host_chid: u32) -> bool {
        self.1.is_none_or(|r| r.lists(host_chid))
    }
    fn forward(&mut self, host_chid: u32, put: u32) {
        host_gpu::ring_doorbell(self.0, host_chid, put)
    }
    fn gp_get(&self, host_chid: u32) -> u32 {
        self.0.bar3_read32(host_userd(host_chid) + u64::from(userd::GP_GET))
    }
    fn gp_put(&self, host_chid: u32) -> u32 {
        self.0.bar3_read32(host_userd(host_chid) + u64::from(userd::GP_PUT))
    }
    fn chan(&self, host_chid: u32) -> (pfifo::ChanInst, pfifo::ChanState) {
        (
            pfifo::ChanInst::from_raw(self.0.rd(pfifo::ChanInst::offset(host_chid))),
            pfifo::ChanState::from_raw(self.0.rd(pfifo::ChanState::offset(host_chid))),
        )
    }
}

/// One queued submission: a channel and the GP_PUT the guest rang, or (after a doorbell was
/// merged into it for another channel) every channel of the vGPU at its newest GP_PUT.
#[derive(Clone, Copy, Default)]
struct Entry {
    chid: u8,
    put: u32,
    /// The channel's doorbell number of `put` (see `Dispatcher::rung`).
    seq: u64,
    all: bool,
}

/// A vGPU's queued submissions, in step with the scheduler account's queue.
#[derive(Clone, Copy)]
struct Queue {
    e: [Entry; QUEUE_DEPTH],
    head: usize,
    len: usize,
}

impl Queue {
    const EMPTY: Self = Self { e: [Entry { chid: 0, put: 0, seq: 0, all: false }; QUEUE_DEPTH], head: 0, len: 0 };

    fn push(&mut self, x: Entry) {
        if self.len < QUEUE_DEPTH {
            if let Some(slot) = self.e.get_mut((self.head + self.len) % QUEUE_DEPTH) {
                *slot = x;
                self.len += 1;
            }
        }
    }

    fn newest(&mut self) -> Option<&mut Entry> {
        let i = (self.head + self.len.checked_sub(1)?) % QUEUE_DEPTH;
        self.e.get_mut(i)
    }

    fn pop(&mut self) -> Option<Entry> {
        if self.len == 0 {
            return None;
        }
        let x = *self.e.get(self.head)?;
        self.head = (self.head + 1) % QUEUE_DEPTH;
        self.len -= 1;
        Some(x)
    }
}

/// The submission on the GPU.
#[derive(Clone, Copy)]
struct Run {
    vgpu: VgpuId,
    /// Host channels forwarded for it.
    chans: u128,
    since: Ns,
    /// The sum of those channels' host GP_GETs when last looked at, and when it last moved:
    /// the run limit counts from there.
    mark: u32,
    progress_at: Ns,
}

/// Per-vGPU counters of the mechanism (the scheduler's are in [`VgpuStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Doorbells forwarded at once into the vGPU's running submission.
    pub merged_running: u64,
    /// Submissions given up on after [`RUN_LIMIT_NS`] without progress.
    pub given_up: u64,
    /// Submissions that found their GP_PUT already forwarded (covered by a later one).
    pub empty: u64,
    /// Doorbells for a host channel the vGPU does not own, or while it is not added.
    pub refused: u64,
}

impl DispatchStats {
    pub const ZERO: Self = Self { merged_running: 0, given_up: 0, empty: 0, refused: 0 };

    /// Adds `other`'s counts to these (as [`VgpuStats::accumulate`] does for the scheduler's).
    pub fn accumulate(&mut self, other: &DispatchStats) {
        self.merged_running = self.merged_running.saturating_add(other.merged_running);
        self.given_up = self.given_up.saturating_add(other.given_up);
        self.empty = self.empty.saturating_add(other.empty);
        self.refused = self.refused.saturating_add(other.refused);
    }
}

/// What the caller does after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Call [`Dispatcher::poll`] at this time (or at the next host interrupt, if earlier).
    At(Ns),
    /// Nothing runs or waits: nothing to do until the next doorbell.
    Idle,
}

/// The dispatcher of one GPU (about 4 KiB: allocate it, do not put it on a kernel stack).
pub struct Dispatcher {
    sched: Scheduler,
    queues: [Queue; MAX_VGPUS],
    /// Owner of each host channel (set at its first doorbell, cleared at removal).
    owner: [Option<VgpuId>; CHANNELS],
    /// Newest GP_PUT rung per host channel.
    latest: [u32; CHANNELS],
    /// Doorbells rung per host channel, and the number of the one forwarded last: a queued
    /// GP_PUT older than what a merge already forwarded is never forwarded after it (GP_PUT
    /// going back would make PFIFO run the whole ring around again).
    rung: [u64; CHANNELS],
    fwd: [u64; CHANNELS],
    running: Option<Run>,
    stats: [DispatchStats; MAX_VGPUS],
}

impl Dispatcher {
    /// `const`: the kernel has it built at compile time and copied into its allocation (it is
    /// too large for a kernel stack).
    pub const fn new(kind: PolicyKind, knobs: Knobs, now: Ns) -> Self {
        Self {
            sched: Scheduler::new(kind, knobs, now),
            queues: [Queue::EMPTY; MAX_VGPUS],
            owner: [None; CHANNELS],
            latest: [0; CHANNELS],
            rung: [0; CHANNELS],
            fwd: [0; CHANNELS],
            running: None,
            stats: [DispatchStats::ZERO; MAX_VGPUS],
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    pub fn stats(&self, v: VgpuId) -> Option<(VgpuStats, DispatchStats)> {
        Some((self.sched.stats(v)?, *self.stats.get(v.index())?))
    }

    /// The vGPU whose submission runs, if any.
    pub fn running(&self) -> Option<VgpuId> {
        self.running.map(|r| r.vgpu)
    }

    /// `v` exists (its first open).
    pub fn add(&mut self, v: VgpuId, weight: Weight, now: Ns) -> Result<(), SchedError> {
        self.sched.add(v, weight, now)?;
        if let Some(s) = self.stats.get_mut(v.index()) {
            *s = DispatchStats::default();
        }
        if let Some(q) = self.queues.get_mut(v.index()) {
            *q = Queue::EMPTY;
        }
        Ok(())
    }

    /// `v` is gone (removed, reset or closed: its channels were stopped first). Its queued
    /// submissions are dropped; if its submission was running the GPU is free for the others,
    /// whose queued work is untouched.
    pub fn remove(&mut self, host: &mut dyn DispatchHost, v: VgpuId, now: Ns) -> Next {
        let _ = self.sched.remove(v, now);
        if let Some(q) = self.queues.get_mut(v.index()) {
            *q = Queue::EMPTY;
        }
        for o in self.owner.iter_mut().filter(|o| **o == Some(v)) {
            *o = None;
        }
        if self.running.is_some_and(|r| r.vgpu == v) {
            self.running = None;
        }
        self.next(host, now)
    }

    pub fn set_weight(&mut self, v: VgpuId, w: Weight, now: Ns) -> Result<(), SchedError> {
        self.sched.set_weight(v, w, now)
    }

    pub fn set_policy(&mut self, host: &mut dyn DispatchHost, kind: PolicyKind, now: Ns) -> Next {
        self.sched.set_policy(kind, now);
        self.next(host, now)
    }

    pub fn set_period(&mut self, p: Period, now: Ns) {
        self.sched.set_period(p, now)
    }

    pub fn set_band_wait(&mut self, w: BandWait, now: Ns) {
        self.sched.set_band_wait(w, now)
    }

    /// Guest `v` rang host channel `host_chid` (one of its own, checked by the mediator) with
    /// GP_PUT `put` (inside its ring, checked by the mediator).
    pub fn submit(&mut self, host: &mut dyn DispatchHost, v: VgpuId, host_chid: u32, put: u32, now: Ns) -> Next {
        let c = host_chid as usize;
        let owner_ok = self.owner.get(c).is_some_and(|o| o.is_none_or(|o| o == v));
        if !owner_ok || !self.sched.account().is_present(v) {
            if let Some(s) = self.stats.get_mut(v.index()) {
                s.refused += 1;
            }
            return self.next(host, now);
        }
        self.complete_if_done(host, now);
        let mut seq = 0;
        if let (Some(o), Some(l), Some(r)) = (self.owner.get_mut(c), self.latest.get_mut(c), self.rung.get_mut(c)) {
            *o = Some(v);
            *l = put;
            *r += 1;
            seq = *r;
        }
        let merge_window = self.sched.knobs().period.ns() / MERGE_WINDOW_DIV;
        let others_wait = self.sched.account().queued_vgpus().any(|q| q != v);
        if let Some(r) = self.running.as_mut().filter(|r| r.vgpu == v && !others_wait && now.saturating_sub(r.since) < merge_window) {
            r.chans |= 1u128 << c;
            if let Some(f) = self.fwd.get_mut(c) {
                *f = seq;
            }
            host.forward(host_chid, put);
            if let Some(s) = self.stats.get_mut(v.index()) {
                s.merged_running += 1;
            }
            return self.next(host, now);
        }
        let entry = Entry { chid: host_chid as u8, put, seq, all: false };
        match (self.sched.submit(v, now), self.queues.get_mut(v.index())) {
            (Ok(Submitted::Queued), Some(q)) => q.push(entry),
            (Ok(Submitted::Merged), Some(q)) => {
                if let Some(n) = q.newest() {
                    if n.all || n.chid as usize == c {
                        n.put = put;
                        n.seq = seq;
                    } else {
                        n.all = true;
                    }
                }
            }
            _ => {}
        }
        self.next(host, now)
    }

    /// A host interrupt was serviced, or the time [`Next::At`] came: completes the running
    /// submission if it is done and dispatches the next.
    pub fn poll(&mut self, host: &mut dyn DispatchHost, now: Ns) -> Next {
        self.complete_if_done(host, now);
        self.next(host, now)
    }

    /// Whether host channel `c` has done everything forwarded to it, or cannot progress.
    fn chan_done(&self, host: &dyn DispatchHost, c: u32) -> bool {
        let (inst, state) = host.chan(c);
        // Unbound, disabled or off the runlist (the guest took it off): it cannot progress,
        // and holding the GPU for it would idle everyone until the run limit. Blocked on a
        // semaphore acquire (STATE bit 4 ACQUIRE_PENDING, PFIFO saw it at its last switch):
        // not using the engines; the rest of its work runs outside the accounting once
        // released (a later doorbell of the vGPU charges it again).
        if !inst.valid() || !state.runnable() || state.acquire_pending() || !host.listed(c) {
            return true;
        }
        host.gp_get(c) == host.gp_put(c) && !state.pending()
    }

    /// The sum of the host GP_GETs of the channels in `chans` (it moves when any of them
    /// completes an entry).
    fn progress_mark(host: &dyn DispatchHost, chans: u128) -> u32 {
        (0..pfifo::CHANNELS).filter(|&c| chans & (1u128 << c) != 0).fold(0u32, |m, c| m.wrapping_add(host.gp_get(c)))
    }

    fn complete_if_done(&mut self, host: &mut dyn DispatchHost, now: Ns) {
        let Some(mut r) = self.running else { return };
        let mark = Self::progress_mark(host, r.chans);
        if mark != r.mark {
            r.mark = mark;
            r.progress_at = now;
            self.running = Some(r);
        }
        let timed_out = now.saturating_sub(r.progress_at) >= RUN_LIMIT_NS;
        let done = (0..pfifo::CHANNELS).filter(|&c| r.chans & (1u128 << c) != 0).all(|c| self.chan_done(host, c));
        if !(done || timed_out) {
            return;
        }
        if !done {
            if let Some(s) = self.stats.get_mut(r.vgpu.index()) {
                s.given_up += 1;
            }
        }
        self.running = None;
        let _ = self.sched.complete(r.vgpu, now.saturating_sub(r.since), now);
    }

    /// Dispatches while the GPU is free and work is queued; says when to look again.
    fn next(&mut self, host: &mut dyn DispatchHost, now: Ns) -> Next {
        // Each round either dispatches (and returns, or completes an empty submission and
        // goes on) or returns: bounded by the number of queued submissions.
        for _ in 0..=MAX_VGPUS * QUEUE_DEPTH {
            if let Some(r) = self.running {
                return Next::At(now.saturating_add(FALLBACK_NS).min(r.progress_at.saturating_add(RUN_LIMIT_NS)));
            }
            match self.sched.pick(now) {
                Decision::Run(v) => {
                    if self.dispatch(host, v, now) {
                        return Next::At(now.saturating_add(FALLBACK_NS));
                    }
                    // Nothing new to forward: complete at once, pick again.
                    if let Some(s) = self.stats.get_mut(v.index()) {
                        s.empty += 1;
                    }
                    self.running = None;
                    let _ = self.sched.complete(v, 0, now);
                }
                // BAND holds the GPU: a doorbell before `t` asks again (the policy may then
                // run the vGPU it waits for).
                Decision::WaitUntil(t) => return Next::At(t),
                Decision::Idle | Decision::Busy => return Next::Idle,
            }
        }
        Next::Idle
    }

    /// Forwards `v`'s oldest queued submission (the scheduler counts it running); whether
    /// anything new reached the GPU.
    fn dispatch(&mut self, host: &mut dyn DispatchHost, v: VgpuId, now: Ns) -> bool {
        let Some(e) = self.queues.get_mut(v.index()).and_then(Queue::pop) else { return false };
        let mut chans = 0u128;
        for c in 0..CHANNELS {
            let mine = if e.all { self.owner.get(c).copied().flatten() == Some(v) } else { c == e.chid as usize };
            if !mine {
                continue;
            }
            let (put, seq) = if e.all {
                (self.latest.get(c).copied().unwrap_or(0), self.rung.get(c).copied().unwrap_or(0))
            } else {
                (e.put, e.seq)
            };
            let Some(f) = self.fwd.get_mut(c) else { continue };
            if seq <= *f {
                // Already covered by a later GP_PUT forwarded into a running submission.
                continue;
            }
            *f = seq;
            if host.gp_put(c as u32) != put {
                chans |= 1u128 << c;
                host.forward(c as u32, put);
            }
        }
        let mark = Self::progress_mark(host, chans);
        self.running = Some(Run { vgpu: v, chans, since: now, mark, progress_at: now });
        chans != 0
    }
}
