// SPDX-License-Identifier: GPL-2.0
//! The shared bookkeeping of one GPU's scheduler: which vGPUs exist, what each has queued
//! (arrival time and order of every queued submission), which submission runs, and per-vGPU
//! GPU time, wait time and counts.
//!
//! It belongs to the mechanism, not to a policy: it survives a policy switch unchanged, so
//! nothing queued or running is lost, and every policy decides from the same facts. Only
//! [`super::scheduler::Scheduler`] changes it; policies and sysfs read it.
//!
//! Storage is fixed: [`MAX_VGPUS`] slots of [`QUEUE_DEPTH`] submissions. A doorbell that finds
//! its vGPU's queue full is merged into the newest queued submission: a later GP_PUT covers
//! the GPFIFO entries of an earlier one, so the mediator forwards both as one.

use super::knobs::Weight;

/// Most vGPUs of one GPU (gpuvm-8 is the finest split).
pub const MAX_VGPUS: usize = 8;
/// Queued submissions per vGPU before doorbells are merged (Gdev allowed 32 outstanding
/// launches per context; a merged doorbell costs nothing but the finer interleaving).
pub const QUEUE_DEPTH: usize = 16;

/// Time in nanoseconds (the kernel's `ktime_get_ns()`).
pub type Ns = u64;

/// A vGPU's slot in its GPU's scheduler, `0..MAX_VGPUS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VgpuId(u8);

impl VgpuId {
    /// The slot `slot`, if it exists.
    pub const fn new(slot: usize) -> Option<Self> {
        if slot < MAX_VGPUS {
            Some(Self(slot as u8))
        } else {
            None
        }
    }

    /// The slot number, always below [`MAX_VGPUS`].
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every slot, in order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..MAX_VGPUS as u8).map(Self)
    }
}

/// What the mediator does with a doorbell the scheduler accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new submission at the tail of the vGPU's queue.
    Queued,
    /// The queue is full: fold the doorbell into the vGPU's newest queued submission.
    Merged,
}

/// A scheduler event that does not fit the state (a mediator bug: warn once and go on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// `add` of a vGPU that exists.
    Exists,
    /// An event for a vGPU that does not exist.
    Absent,
    /// `complete` of a vGPU whose submission is not the one running.
    NotRunning,
}

/// Per-vGPU counters since the vGPU was added (the sysfs counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VgpuStats {
    /// GPU time charged at completions.
    pub gpu_time_ns: u64,
    /// Time submissions spent queued before they were dispatched.
    pub wait_time_ns: u64,
    /// The longest of those waits.
    pub max_wait_ns: u64,
    /// Doorbells accepted (queued or merged).
    pub submissions: u64,
    /// Of those, merged into a queued submission.
    pub merged: u64,
    /// Submissions given to the GPU.
    pub dispatched: u64,
    /// Submissions completed.
    pub completed: u64,
    /// Submissions queued now.
    pub queued: u32,
}

impl VgpuStats {
    /// Adds `other`'s counters to these: the totals are summed, the longest wait is the
    /// larger of the two, and `queued` (a present state, not a total) is left as it is. How a
    /// vGPU's counters survive its removal from the scheduler at a reset or close.
    pub fn accumulate(&mut self, other: &VgpuStats) {
        self.gpu_time_ns = self.gpu_time_ns.saturating_add(other.gpu_time_ns);
        self.wait_time_ns = self.wait_time_ns.saturating_add(other.wait_time_ns);
        self.max_wait_ns = self.max_wait_ns.max(other.max_wait_ns);
        self.submissions = self.submissions.saturating_add(other.submissions);
        self.merged = self.merged.saturating_add(other.merged);
        self.dispatched = self.dispatched.saturating_add(other.dispatched);
        self.completed = self.completed.saturating_add(other.completed);
    }
}

/// The submission on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    pub vgpu: VgpuId,
    /// When it was dispatched.
    pub since: Ns,
}

/// The last completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub vgpu: VgpuId,
    pub at: Ns,
}

/// What `remove` dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Queued submissions dropped with the vGPU.
    pub dropped: u32,
    /// Its submission was on the GPU (the mediator stops the channel before removal).
    pub was_running: bool,
}

/// Arrival time and order of each queued submission of one vGPU (a ring).
#[derive(Clone, Copy)]
struct Queue {
    arrival: [Ns; QUEUE_DEPTH],
    seq: [u32; QUEUE_DEPTH],
    head: usize,
    len: usize,
}

impl Queue {
    const EMPTY: Self = Self { arrival: [0; QUEUE_DEPTH], seq: [0; QUEUE_DEPTH], head: 0, len: 0 };

    fn push(&mut self, at: Ns, seq: u32) -> bool {
        let i = (self.head + self.len) % QUEUE_DEPTH;
        match (self.len < QUEUE_DEPTH, self.arrival.get_mut(i), self.seq.get_mut(i)) {
            (true, Some(a), Some(s)) => {
                *a = at;
                *s = seq;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    fn head(&self) -> Option<(Ns, u32)> {
        if self.len == 0 {
            return None;
        }
        Some((*self.arrival.get(self.head)?, *self.seq.get(self.head)?))
    }

    fn pop(&mut self) -> Option<(Ns, u32)> {
        let h = self.head()?;
        self.head = (self.head + 1) % QUEUE_DEPTH;
        self.len -= 1;
        Some(h)
    }
}

#[derive(Clone, Copy)]
struct Slot {
    present: bool,
    weight: Weight,
    queue: Queue,
    stats: VgpuStats,
    /// Dispatch number of its last dispatch (0: never), for round-robin tie breaks.
    last_dispatch: u64,
}

impl Slot {
    const EMPTY: Self = Self {
        present: false,
        weight: Weight::DEFAULT,
        queue: Queue::EMPTY,
        stats: VgpuStats {
            gpu_time_ns: 0,
            wait_time_ns: 0,
            max_wait_ns: 0,
            submissions: 0,
            merged: 0,
            dispatched: 0,
            completed: 0,
            queued: 0,
        },
        last_dispatch: 0,
    };
}

/// The bookkeeping of one GPU (about 1.8 KiB).
#[derive(Clone)]
pub struct Account {
    slots: [Slot; MAX_VGPUS],
    running: Option<Running>,
    last_done: Option<Done>,
    /// Arrival number of the next submission (wraps; only differences are compared).
    next_seq: u32,
    dispatches: u64,
    busy_ns: u64,
}

impl Default for Account {
    fn default() -> Self {
        Self::new()
    }
}

impl Account {
    pub const fn new() -> Self {
        Self { slots: [Slot::EMPTY; MAX_VGPUS], running: None, last_done: None, next_seq: 0, dispatches: 0, busy_ns: 0 }
    }

    fn slot(&self, v: VgpuId) -> Option<&Slot> {
        self.slots.get(v.index()).filter(|s| s.present)
    }

    fn slot_mut(&mut self, v: VgpuId) -> Option<&mut Slot> {
        self.slots.get_mut(v.index()).filter(|s| s.present)
    }

    pub fn is_present(&self, v: VgpuId) -> bool {
        self.slot(v).is_some()
    }

    /// The vGPUs that exist.
    pub fn present(&self) -> impl Iterator<Item = VgpuId> + '_ {
        VgpuId::all().filter(|&v| self.is_present(v))
    }

    /// The vGPUs with queued submissions.
    pub fn queued_vgpus(&self) -> impl Iterator<Item = VgpuId> + '_ {
        VgpuId::all().filter(|&v| self.queued(v) > 0)
    }

    pub fn weight(&self, v: VgpuId) -> Option<Weight> {
        self.slot(v).map(|s| s.weight)
    }

    /// Weight of `v`, 0 if it does not exist.
    pub fn weight_or_zero(&self, v: VgpuId) -> u32 {
        self.weight(v).map_or(0, Weight::get)
    }

    /// Sum of the weights of the vGPUs that exist.
    pub fn present_weight(&self) -> u32 {
        self.present().map(|v| self.weight_or_zero(v)).sum()
    }

    /// Queued submissions of `v` (0 if it does not exist).
    pub fn queued(&self, v: VgpuId) -> u32 {
        self.slot(v).map_or(0, |s| s.queue.len as u32)
    }

    pub fn any_queued(&self) -> bool {
        self.queued_vgpus().next().is_some()
    }

    /// Arrival time of `v`'s oldest queued submission.
    pub fn head_arrival(&self, v: VgpuId) -> Option<Ns> {
        self.slot(v)?.queue.head().map(|(at, _)| at)
    }

    /// How many submissions (of any vGPU) arrived after `v`'s oldest queued one.
    pub fn head_age(&self, v: VgpuId) -> Option<u32> {
        let (_, seq) = self.slot(v)?.queue.head()?;
        Some(self.next_seq.wrapping_sub(seq))
    }

    /// The vGPU whose queued submission arrived first.
    pub fn oldest_queued(&self) -> Option<VgpuId> {
        self.queued_vgpus().max_by_key(|&v| self.head_age(v).unwrap_or(0))
    }

    /// Dispatch number of `v`'s last dispatch; 0 if never (smaller = longer ago).
    pub fn last_dispatch(&self, v: VgpuId) -> u64 {
        self.slot(v).map_or(0, |s| s.last_dispatch)
    }

    pub fn running(&self) -> Option<Running> {
        self.running
    }

    pub fn last_done(&self) -> Option<Done> {
        self.last_done
    }

    /// GPU time charged to all vGPUs.
    pub fn busy_ns(&self) -> u64 {
        self.busy_ns
    }

    pub fn stats(&self, v: VgpuId) -> Option<VgpuStats> {
        self.slot(v).map(|s| VgpuStats { queued: s.queue.len as u32, ..s.stats })
    }

    pub(super) fn add(&mut self, v: VgpuId, weight: Weight) -> Result<(), SchedError> {
        let s = self.slots.get_mut(v.index()).ok_or(SchedError::Absent)?;
        if s.present {
            return Err(SchedError::Exists);
        }
        *s = Slot { present: true, weight, ..Slot::EMPTY };
        Ok(())
    }

    pub(super) fn remove(&mut self, v: VgpuId) -> Result<Removed, SchedError> {
        let s = self.slot_mut(v).ok_or(SchedError::Absent)?;
        let dropped = s.queue.len as u32;
        *s = Slot::EMPTY;
        let was_running = self.running.is_some_and(|r| r.vgpu == v);
        if was_running {
            self.running = None;
        }
        if self.last_done.is_some_and(|d| d.vgpu == v) {
            self.last_done = None;
        }
        Ok(Removed { dropped, was_running })
    }

    pub(super) fn set_weight(&mut self, v: VgpuId, w: Weight) -> Result<(), SchedError> {
        self.slot_mut(v).ok_or(SchedError::Absent)?.weight = w;
        Ok(())
    }

    pub(super) fn submit(&mut self, v: VgpuId, now: Ns) -> Result<Submitted, SchedError> {
        let seq = self.next_seq;
        let s = self.slot_mut(v).ok_or(SchedError::Absent)?;
        s.stats.submissions = s.stats.submissions.saturating_add(1);
        if s.queue.push(now, seq) {
            self.next_seq = seq.wrapping_add(1);
            Ok(Submitted::Queued)
        } else {
            s.stats.merged = s.stats.merged.saturating_add(1);
            Ok(Submitted::Merged)
        }
    }

    /// `v`'s oldest queued submission goes to the GPU. `None` if the GPU is busy or `v` has
    /// nothing queued (the caller checked both).
    pub(super) fn dispatch(&mut self, v: VgpuId, now: Ns) -> Option<()> {
        if self.running.is_some() {
            return None;
        }
        let n = self.dispatches.saturating_add(1);
        let s = self.slot_mut(v)?;
        let (arrival, _) = s.queue.pop()?;
        let waited = now.saturating_sub(arrival);
        s.stats.wait_time_ns = s.stats.wait_time_ns.saturating_add(waited);
        s.stats.max_wait_ns = s.stats.max_wait_ns.max(waited);
        s.stats.dispatched = s.stats.dispatched.saturating_add(1);
        s.last_dispatch = n;
        self.dispatches = n;
        self.running = Some(Running { vgpu: v, since: now });
        Some(())
    }

    pub(super) fn complete(&mut self, v: VgpuId, gpu_time_ns: Ns, now: Ns) -> Result<(), SchedError> {
        if self.running.map(|r| r.vgpu) != Some(v) {
            return Err(if self.is_present(v) { SchedError::NotRunning } else { SchedError::Absent });
        }
        let s = self.slot_mut(v).ok_or(SchedError::Absent)?;
        s.stats.gpu_time_ns = s.stats.gpu_time_ns.saturating_add(gpu_time_ns);
        s.stats.completed = s.stats.completed.saturating_add(1);
        self.busy_ns = self.busy_ns.saturating_add(gpu_time_ns);
        self.running = None;
        self.last_done = Some(Done { vgpu: v, at: now });
        Ok(())
    }
}
