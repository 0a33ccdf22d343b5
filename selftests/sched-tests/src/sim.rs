//! A simulated GPU driven by the scheduler the way the mediator drives it: a clock, vGPUs
//! whose guests ring doorbells (backlogged, closed-loop, bursts, idle), and one
//! non-preemptive engine that runs one submission at a time for the submission's length.
//!
//! The simulator is also the checker: it holds the doorbell queues (the mechanism's side)
//! and panics when the scheduler asks to run a vGPU with nothing queued, says `Idle` while
//! work is queued, or waits where it may not. Everything else is recorded in [`Trace`].
extern crate std;

use std::collections::VecDeque;
use std::vec::Vec;

use crate::sched::account::{Submitted, VgpuId, MAX_VGPUS};
use crate::sched::knobs::{Knobs, PolicyKind, Weight};
use crate::sched::policy::Decision;
use crate::sched::scheduler::Scheduler;

pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000_000_000;

/// splitmix64: deterministic, seedable, good enough for workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Length of a vGPU's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Fixed(u64),
    Uniform(u64, u64),
}

impl Kernel {
    pub fn max(self) -> u64 {
        match self {
            Self::Fixed(l) => l,
            Self::Uniform(_, hi) => hi,
        }
    }

    fn draw(self, rng: &mut Rng) -> u64 {
        match self {
            Self::Fixed(l) => l,
            Self::Uniform(lo, hi) => rng.range(lo, hi),
        }
    }
}

/// How a vGPU's guest rings doorbells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Keeps `depth` submissions queued or running at all times.
    Backlogged { depth: u32 },
    /// One submission at a time; the next `think` after the previous completed.
    ClosedLoop { think: u64 },
    /// `count` doorbells at once, every `every`.
    Bursts { count: u32, every: u64 },
    /// Never rings.
    Idle,
}

/// One simulated vGPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VgpuSpec {
    pub weight: u32,
    pub kernel: Kernel,
    pub load: Load,
}

impl VgpuSpec {
    pub fn new(weight: u32, kernel: Kernel, load: Load) -> Self {
        Self { weight, kernel, load }
    }
}

/// One dispatch: which vGPU, when, and the sim-wide arrival number of its oldest doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub vgpu: usize,
    pub at: u64,
    pub seq: u64,
}

/// What the run looked like.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Every dispatch, in order (only when `record` is set).
    pub dispatches: Vec<Dispatch>,
    pub record: bool,
    /// GPU busy time.
    pub busy_ns: u64,
    /// GPU idle time while some doorbell was queued.
    pub idle_with_work_ns: u64,
    /// Idle-with-work intervals: (start, end, last completion at or before start).
    pub idle_gaps: Vec<(u64, u64, u64)>,
    /// Highest credit seen per vGPU (CREDIT, BAND).
    pub max_credit: [i64; MAX_VGPUS],
    /// Doorbells rung and completed per vGPU.
    pub doorbells: [u64; MAX_VGPUS],
    pub doorbells_done: [u64; MAX_VGPUS],
    /// Completed submissions per vGPU.
    pub completions: [u64; MAX_VGPUS],
    /// Waits taken (`WaitUntil` answers).
    pub waits: u64,
    /// Longest time a vGPU had work queued, none of it running, before it was dispatched.
    pub max_service_gap: [u64; MAX_VGPUS],
    /// Longest submission dispatched (merged doorbells make long ones).
    pub max_submission_ns: u64,
}

#[derive(Clone, Debug)]
struct SimVgpu {
    spec: VgpuSpec,
    id: VgpuId,
    present: bool,
    /// Queued submissions: (length, doorbells folded in, arrival number of the first).
    queue: VecDeque<(u64, u64, u64)>,
    /// Next doorbell time of a closed-loop or bursty guest.
    next: Option<u64>,
}

/// The simulated GPU.
pub struct Sim {
    pub now: u64,
    pub sched: Scheduler,
    vgpus: Vec<SimVgpu>,
    rng: Rng,
    /// (vGPU, end, length, doorbells) of the running submission.
    running: Option<(usize, u64, u64, u64)>,
    wake: Option<u64>,
    last_completion: u64,
    next_seq: u64,
    /// Since when a vGPU has work queued and none running (see `max_service_gap`).
    eligible_since: [Option<u64>; MAX_VGPUS],
    /// Guests stop ringing (for draining).
    pub quiet: bool,
    pub trace: Trace,
}

impl Sim {
    pub fn new(kind: PolicyKind, knobs: Knobs, specs: &[VgpuSpec], seed: u64) -> Self {
        let mut sim = Self {
            now: 0,
            sched: Scheduler::new(kind, knobs, 0),
            vgpus: Vec::new(),
            rng: Rng::new(seed),
            running: None,
            wake: None,
            last_completion: 0,
            next_seq: 0,
            eligible_since: [None; MAX_VGPUS],
            quiet: false,
            trace: Trace { max_credit: [i64::MIN; MAX_VGPUS], ..Trace::default() },
        };
        for s in specs {
            sim.add(*s);
        }
        sim
    }

    /// Adds a vGPU in the next free slot; returns its index.
    pub fn add(&mut self, spec: VgpuSpec) -> usize {
        let i = self.vgpus.len();
        let id = VgpuId::new(i).expect("at most MAX_VGPUS vGPUs");
        self.sched.add(id, Weight::new(spec.weight).expect("weight in range"), self.now).expect("add");
        self.vgpus.push(SimVgpu { spec, id, present: true, queue: VecDeque::new(), next: None });
        self.start_load(i);
        self.dispatch_if_free();
        i
    }

    pub fn id(&self, i: usize) -> VgpuId {
        self.vgpus[i].id
    }

    pub fn len(&self) -> usize {
        self.vgpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vgpus.is_empty()
    }

    pub fn spec(&self, i: usize) -> VgpuSpec {
        self.vgpus[i].spec
    }

    /// Changes a vGPU's guest behaviour from now on.
    pub fn set_load(&mut self, i: usize, load: Load) {
        self.vgpus[i].spec.load = load;
        self.vgpus[i].next = None;
        self.start_load(i);
        self.dispatch_if_free();
    }

    /// Removes a vGPU (its queued doorbells are dropped, as the mediator drops them).
    pub fn remove(&mut self, i: usize) {
        let v = &mut self.vgpus[i];
        let r = self.sched.remove(v.id, self.now).expect("remove");
        assert_eq!(r.dropped as usize, v.queue.len(), "the scheduler's queue mirrors the mediator's");
        v.queue.clear();
        v.present = false;
        v.next = None;
        self.eligible_since[i] = None;
        if r.was_running {
            self.running = None;
        }
        self.dispatch_if_free();
    }

    pub fn set_policy(&mut self, kind: PolicyKind) {
        self.sched.set_policy(kind, self.now);
        self.dispatch_if_free();
    }

    /// GPU time charged to vGPU `i` so far.
    pub fn gpu_ns(&self, i: usize) -> u64 {
        self.sched.stats(self.vgpus[i].id).map_or(0, |s| s.gpu_time_ns)
    }

    pub fn max_wait_ns(&self, i: usize) -> u64 {
        self.sched.stats(self.vgpus[i].id).map_or(0, |s| s.max_wait_ns)
    }

    /// Longest time any doorbell of `i` queued now has waited.
    pub fn oldest_queued_age(&self, i: usize) -> u64 {
        self.sched.account().head_arrival(self.vgpus[i].id).map_or(0, |a| self.now - a)
    }

    /// The longest service gap of vGPU `i` so far, counting one still open.
    pub fn service_gap(&self, i: usize) -> u64 {
        let open = self.eligible_since[i].map_or(0, |since| self.now - since);
        self.trace.max_service_gap[i].max(open)
    }

    pub fn queued(&self, i: usize) -> usize {
        self.vgpus[i].queue.len()
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn start_load(&mut self, i: usize) {
        if self.quiet {
            return;
        }
        match self.vgpus[i].spec.load {
            Load::Backlogged { .. } => self.top_up(i),
            Load::ClosedLoop { .. } => {
                if self.vgpus[i].queue.is_empty() && self.running.is_none_or(|r| r.0 != i) {
                    self.ring(i);
                }
            }
            Load::Bursts { .. } => self.vgpus[i].next = Some(self.now),
            Load::Idle => {}
        }
    }

    fn outstanding(&self, i: usize) -> usize {
        self.vgpus[i].queue.len() + usize::from(self.running.is_some_and(|r| r.0 == i))
    }

    fn top_up(&mut self, i: usize) {
        if let Load::Backlogged { depth } = self.vgpus[i].spec.load {
            while !self.quiet && self.outstanding(i) < depth as usize {
                let before = self.vgpus[i].queue.len();
                self.ring(i);
                if self.vgpus[i].queue.len() == before {
                    break; // merged: the queue is full
                }
            }
        }
    }

    /// A doorbell of vGPU `i` with a new kernel.
    fn ring(&mut self, i: usize) {
        let len = self.vgpus[i].spec.kernel.draw(&mut self.rng);
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.vgpus[i].queue.is_empty() && self.running.is_none_or(|r| r.0 != i) {
            self.eligible_since[i] = Some(self.now);
        }
        let v = &mut self.vgpus[i];
        self.trace.doorbells[i] += 1;
        match self.sched.submit(v.id, self.now).expect("submit") {
            Submitted::Queued => v.queue.push_back((len, 1, seq)),
            Submitted::Merged => {
                let last = v.queue.back_mut().expect("merged into a queued submission");
                last.0 += len;
                last.1 += 1;
            }
        }
    }

    fn note_credit(&mut self) {
        for (i, v) in self.vgpus.iter().enumerate() {
            if let Some(c) = self.sched.credit_of(v.id) {
                self.trace.max_credit[i] = self.trace.max_credit[i].max(c);
            }
        }
    }

    fn any_queued(&self) -> bool {
        self.vgpus.iter().any(|v| !v.queue.is_empty())
    }

    fn dispatch_if_free(&mut self) {
        if self.running.is_some() {
            return;
        }
        match self.sched.pick(self.now) {
            Decision::Run(v) => {
                let i = v.index();
                let (len, doorbells, seq) =
                    self.vgpus[i].queue.pop_front().expect("the scheduler ran a vGPU with nothing queued");
                self.running = Some((i, self.now + len, len, doorbells));
                self.trace.max_submission_ns = self.trace.max_submission_ns.max(len);
                self.wake = None;
                if let Some(since) = self.eligible_since[i].take() {
                    self.trace.max_service_gap[i] = self.trace.max_service_gap[i].max(self.now - since);
                }
                if self.trace.record {
                    self.trace.dispatches.push(Dispatch { vgpu: i, at: self.now, seq });
                }
            }
            Decision::WaitUntil(t) => {
                assert_eq!(self.sched.policy(), PolicyKind::Band, "only BAND waits");
                assert!(t > self.now && t <= self.now + self.sched.knobs().band_wait.ns(), "wait out of bounds");
                assert!(self.any_queued());
                self.trace.waits += 1;
                self.wake = Some(t);
            }
            Decision::Idle => assert!(!self.any_queued(), "Idle while work is queued"),
            Decision::Busy => panic!("Busy while the GPU is free"),
        }
        self.note_credit();
    }

    fn next_event(&self) -> Option<u64> {
        let guests = self.vgpus.iter().filter_map(|v| v.next);
        let gpu = self.running.map(|r| r.1);
        guests.chain(gpu).chain(self.wake).min()
    }

    /// Runs until `end` (events at `end` included).
    pub fn run_until(&mut self, end: u64) {
        loop {
            let t = match self.next_event() {
                Some(t) if t <= end => t,
                _ => {
                    self.pass(end);
                    return;
                }
            };
            self.pass(t);
            self.step();
        }
    }

    /// Stops every guest and runs until nothing is queued or running (at most `limit` more).
    /// Returns whether it drained.
    pub fn drain(&mut self, limit: u64) -> bool {
        self.quiet = true;
        for v in &mut self.vgpus {
            v.next = None;
        }
        let end = self.now + limit;
        while self.running.is_some() || self.any_queued() {
            match self.next_event() {
                Some(t) if t <= end => {
                    self.pass(t);
                    self.step();
                }
                _ => return false,
            }
        }
        true
    }

    /// Time passes to `t` with nothing happening.
    fn pass(&mut self, t: u64) {
        let dt = t - self.now;
        if dt > 0 {
            if self.running.is_some() {
                self.trace.busy_ns += dt;
            } else if self.any_queued() {
                self.trace.idle_with_work_ns += dt;
                self.trace.idle_gaps.push((self.now, t, self.last_completion));
            }
        }
        self.now = t;
    }

    /// Handles everything due now: the completion, then doorbells, then the next dispatch.
    fn step(&mut self) {
        let now = self.now;
        if let Some((i, end, len, doorbells)) = self.running {
            if end == now {
                self.running = None;
                self.sched.complete(self.vgpus[i].id, len, now).expect("complete");
                self.last_completion = now;
                self.trace.completions[i] += 1;
                self.trace.doorbells_done[i] += doorbells;
                if !self.vgpus[i].queue.is_empty() {
                    self.eligible_since[i] = Some(now);
                }
                if !self.quiet {
                    match self.vgpus[i].spec.load {
                        Load::Backlogged { .. } => self.top_up(i),
                        Load::ClosedLoop { think } => self.vgpus[i].next = Some(now + think),
                        _ => {}
                    }
                }
            }
        }
        for i in 0..self.vgpus.len() {
            if self.vgpus[i].next != Some(now) || !self.vgpus[i].present {
                continue;
            }
            self.vgpus[i].next = None;
            match self.vgpus[i].spec.load {
                Load::ClosedLoop { .. } => self.ring(i),
                Load::Bursts { count, every } => {
                    for _ in 0..count {
                        self.ring(i);
                    }
                    self.vgpus[i].next = Some(now + every);
                }
                _ => {}
            }
        }
        if self.wake == Some(now) {
            self.wake = None;
        }
        self.dispatch_if_free();
    }
}

/// Spread of GPU time: (max − min) / mean, in parts per million.
pub fn fairness_ppm(times: &[u64]) -> u64 {
    let max = times.iter().copied().max().unwrap_or(0);
    let min = times.iter().copied().min().unwrap_or(0);
    let sum: u64 = times.iter().sum();
    if sum == 0 {
        return 0;
    }
    (max - min) * 1_000_000 * times.len() as u64 / sum
}

/// Largest relative error of the shares of GPU time against the weights, in ppm.
pub fn share_error_ppm(times: &[u64], weights: &[u32]) -> u64 {
    let total: u64 = times.iter().sum();
    let wsum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 || wsum == 0 {
        return 0;
    }
    times
        .iter()
        .zip(weights)
        .map(|(&t, &w)| {
            // |t/total − w/wsum| / (w/wsum) = |t·wsum − w·total| / (w·total)
            let a = u128::from(t) * u128::from(wsum);
            let b = u128::from(w) * u128::from(total);
            (a.abs_diff(b) * 1_000_000 / b) as u64
        })
        .max()
        .unwrap_or(0)
}
