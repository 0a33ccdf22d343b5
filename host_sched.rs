// SPDX-License-Identifier: GPL-2.0
//! The GPU's submission dispatcher in the kernel: shadow/dispatch.rs (mechanism) over
//! sched/ (policy), under the GPU's `dispatch` lock, driven from three places:
//! - a guest doorbell (`KernelChannels::submit`, under the vGPU's state lock) queues or
//!   forwards the submission;
//! - the host interrupt thread polls it after servicing an interrupt (a fence's non-stall
//!   interrupt usually marks the end of a submission);
//! - [`SchedTimer`], a job on the GPU's `gpuvm-sched` queue, polls it at the time the
//!   dispatcher asked for (BAND's wait) or every [`dispatch::FALLBACK_NS`] while work is
//!   queued or running. A poll with nothing running and nothing queued reads no register.
//!
//! The vGPU's slot in the dispatcher is its first VRAM unit (one vGPU per unit at most).
//! The counters shown in sysfs survive a reset or close (which drop the vGPU's queued work
//! by removing and re-adding it): what was charged before is carried here.

use crate::{
    dispatch::{self, BarsHost, DispatchStats, Dispatcher, Next},
    host_env::KernelBars,
    periodic,
    sched::{
        account::{VgpuId, VgpuStats, MAX_VGPUS},
        knobs::{BandWait, KnobError, Knobs, Period, PolicyKind, Weight},
    },
    vgpu, GpuShared,
};
use kernel::{device::Device, prelude::*, sync::Arc};

/// The dispatcher and what the kernel keeps around it (under `GpuShared::dispatch`).
pub(crate) struct DispatchState {
    d: Dispatcher,
    /// When the dispatcher asked to be polled (None: not before the next doorbell).
    at: Option<u64>,
    /// Counters charged before each slot's last reset or close.
    carried: [VgpuStats; MAX_VGPUS],
    carried_mech: [DispatchStats; MAX_VGPUS],
    /// Submissions given up on per slot that were already logged (one dmesg line per vGPU
    /// life: a guest that keeps the GPU busy past the run limit would fill the log).
    given_up_seen: [u64; MAX_VGPUS],
}

impl DispatchState {
    /// The default policy and knobs, no vGPU. It is about 9 KiB, more than half a kernel
    /// stack: built at compile time ([`INITIAL`]) and copied straight into its allocation,
    /// in a frame of its own.
    #[inline(never)]
    pub(crate) fn new() -> Result<KBox<Self>> {
        Ok(KBox::write(KBox::new_uninit(GFP_KERNEL)?, INITIAL))
    }

    fn after(&mut self, n: Next) {
        self.at = match n {
            Next::At(t) => Some(t),
            Next::Idle => None,
        };
    }
}

/// No counters.
const STATS_ZERO: VgpuStats =
    VgpuStats { gpu_time_ns: 0, wait_time_ns: 0, max_wait_ns: 0, submissions: 0, merged: 0, dispatched: 0, completed: 0, queued: 0 };

/// The dispatcher as probe makes it (no vGPUs; time starts at the GPU's epoch).
const INITIAL: DispatchState = DispatchState {
    d: Dispatcher::new(PolicyKind::DEFAULT, Knobs::DEFAULT, 0),
    at: None,
    carried: [STATS_ZERO; MAX_VGPUS],
    carried_mech: [DispatchStats::ZERO; MAX_VGPUS],
    given_up_seen: [0; MAX_VGPUS],
};

/// The counters of one vGPU for sysfs (carried over resets).
#[derive(Clone, Copy, Default)]
pub(crate) struct SchedCounters {
    pub(crate) sched: VgpuStats,
    pub(crate) mech: DispatchStats,
}

/// The dispatcher's slot of the vGPU whose first VRAM unit is `first_unit`.
pub(crate) fn slot(first_unit: u32) -> Option<VgpuId> {
    VgpuId::new(first_unit as usize)
}

/// Microseconds the timer sleeps at least (a deadline already due is polled after this).
const TIMER_MIN_US: u64 = 20;

impl GpuShared {
    /// Guest `v` rang host channel `host_chid` with GP_PUT `put` (checked by the mediator).
    /// Lock order: the caller holds `v`'s state; this takes `dispatch` → `runlist`.
    pub(crate) fn dispatch_submit(&self, v: VgpuId, host_chid: u32, put: u32) {
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        let runlist = self.runlist.lock();
        let n = ds.d.submit(&mut BarsHost(&KernelBars(self), Some(&*runlist)), v, host_chid, put, now);
        drop(runlist);
        ds.after(n);
    }

    /// Looks for the running submission's end and dispatches what is next; returns the slot
    /// whose submission completed in this poll, if any (its guest's USERD view is refreshed
    /// by the caller, with `dispatch` released).
    pub(crate) fn dispatch_poll(&self) -> Option<VgpuId> {
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        let before = ds.d.running();
        let done_before = before.and_then(|v| ds.d.stats(v)).map_or(0, |(s, _)| s.completed);
        let runlist = self.runlist.lock();
        let n = ds.d.poll(&mut BarsHost(&KernelBars(self), Some(&*runlist)), now);
        drop(runlist);
        ds.after(n);
        let completed = before.filter(|&v| ds.d.stats(v).is_some_and(|(s, _)| s.completed != done_before));
        self.log_given_up(&mut ds);
        completed
    }

    /// One dmesg line the first time a vGPU's submission is given up on (no progress for the
    /// run limit: the scheduler moved on, the watchdog bounds the channel further).
    fn log_given_up(&self, ds: &mut DispatchState) {
        for v in VgpuId::all() {
            let Some((_, m)) = ds.d.stats(v) else { continue };
            let total = m.given_up + ds.carried_mech.get(v.index()).map_or(0, |c| c.given_up);
            let Some(seen) = ds.given_up_seen.get_mut(v.index()) else { continue };
            if total > *seen {
                if *seen == 0 {
                    dev_warn!(
                        self.pdev(),
                        "sched: vGPU slot {}: a submission made no progress for {} ms; not waited for any more (logged once per vGPU)\n",
                        v.index(),
                        dispatch::RUN_LIMIT_NS / 1_000_000
                    );
                }
                *seen = total;
            }
        }
    }

    /// A new vGPU in slot `v` (at creation), with the default weight.
    pub(crate) fn dispatch_add(&self, v: VgpuId) {
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        if let Some(c) = ds.carried.get_mut(v.index()) {
            *c = VgpuStats::default();
        }
        if let Some(c) = ds.carried_mech.get_mut(v.index()) {
            *c = DispatchStats::default();
        }
        if let Some(g) = ds.given_up_seen.get_mut(v.index()) {
            *g = 0;
        }
        if let Err(e) = ds.d.add(v, Weight::DEFAULT, now) {
            dev_warn!(self.pdev(), "sched: vGPU slot {} added twice ({:?}): scheduler bookkeeping bug\n", v.index(), e);
        }
    }

    /// Slot `v`'s vGPU was reset or closed (its channels already stopped): its queued work is
    /// dropped (a running submission of it is forgotten), other vGPUs' work is untouched; it
    /// stays in the scheduler with its weight and its counters.
    pub(crate) fn dispatch_reset(&self, v: VgpuId) {
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        let weight = ds.d.scheduler().account().weight(v).unwrap_or_default();
        if let Some((s, m)) = ds.d.stats(v) {
            if let Some(c) = ds.carried.get_mut(v.index()) {
                c.accumulate(&s);
            }
            if let Some(c) = ds.carried_mech.get_mut(v.index()) {
                c.accumulate(&m);
            }
        }
        let runlist = self.runlist.lock();
        let n = ds.d.remove(&mut BarsHost(&KernelBars(self), Some(&*runlist)), v, now);
        drop(runlist);
        let _ = ds.d.add(v, weight, now);
        ds.after(n);
    }

    /// Slot `v`'s vGPU is gone (its channels stopped at close): its queued work is dropped.
    pub(crate) fn dispatch_remove(&self, v: VgpuId) {
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        let runlist = self.runlist.lock();
        let n = ds.d.remove(&mut BarsHost(&KernelBars(self), Some(&*runlist)), v, now);
        drop(runlist);
        ds.after(n);
        if let Some(c) = ds.carried.get_mut(v.index()) {
            *c = VgpuStats::default();
        }
        if let Some(c) = ds.carried_mech.get_mut(v.index()) {
            *c = DispatchStats::default();
        }
    }

    /// The `sched_policy` knob; queued and running work is kept.
    pub(crate) fn set_sched_policy(&self, input: &[u8]) -> Result {
        let kind = PolicyKind::parse(input).map_err(|e| knob_refused(self.pdev(), "sched_policy", input, e))?;
        let now = self.uptime_ns();
        let mut ds = self.dispatch.lock();
        let runlist = self.runlist.lock();
        let n = ds.d.set_policy(&mut BarsHost(&KernelBars(self), Some(&*runlist)), kind, now);
        drop(runlist);
        ds.after(n);
        dev_info!(self.pdev(), "sched: policy {}\n", kind.name());
        Ok(())
    }

    pub(crate) fn sched_policy(&self) -> PolicyKind {
        self.dispatch.lock().d.scheduler().policy()
    }

    pub(crate) fn sched_knobs(&self) -> Knobs {
        self.dispatch.lock().d.scheduler().knobs()
    }

    /// The `sched_period_us` knob.
    pub(crate) fn set_sched_period(&self, input: &[u8]) -> Result {
        let p = Period::parse(input).map_err(|e| knob_refused(self.pdev(), "sched_period_us", input, e))?;
        let now = self.uptime_ns();
        self.dispatch.lock().d.set_period(p, now);
        Ok(())
    }

    /// The `band_wait_us` knob.
    pub(crate) fn set_band_wait(&self, input: &[u8]) -> Result {
        let w = BandWait::parse(input).map_err(|e| knob_refused(self.pdev(), "band_wait_us", input, e))?;
        let now = self.uptime_ns();
        self.dispatch.lock().d.set_band_wait(w, now);
        Ok(())
    }

    /// A vGPU's `weight` knob, written through `dev` (whose name the log line carries);
    /// takes effect at once: the policy re-reads it.
    pub(crate) fn set_weight(&self, dev: &Device, v: VgpuId, input: &[u8]) -> Result {
        let w = Weight::parse(input).map_err(|e| knob_refused(dev, "weight", input, e))?;
        let now = self.uptime_ns();
        self.dispatch.lock().d.set_weight(v, w, now).map_err(|e| {
            dev_warn!(dev, "weight: vGPU slot {} is not in the scheduler ({:?}) (ENODEV)\n", v.index(), e);
            ENODEV
        })
    }

    pub(crate) fn weight(&self, v: VgpuId) -> u32 {
        self.dispatch.lock().d.scheduler().account().weight(v).map_or(0, Weight::get)
    }

    /// Slot `v`'s counters since the vGPU was created.
    pub(crate) fn sched_counters(&self, v: VgpuId) -> SchedCounters {
        let ds = self.dispatch.lock();
        let (mut s, mut mech) = ds.d.stats(v).unwrap_or_default();
        if let Some(c) = ds.carried.get(v.index()) {
            s.accumulate(c);
        }
        if let Some(c) = ds.carried_mech.get(v.index()) {
            mech.accumulate(c);
        }
        SchedCounters { sched: s, mech }
    }

    /// Polls the dispatcher, then refreshes the USERD view of the vGPU whose submission
    /// completed (no list lock held while its state is taken).
    pub(crate) fn dispatch_poll_and_refresh(&self) {
        let Some(v) = self.dispatch_poll() else { return };
        let dev = self.vgpu_list.lock().iter().find(|d| slot(d.slice.first_unit) == Some(v)).cloned();
        if let Some(dev) = dev {
            vgpu::Vgpu::refresh_userd(&dev);
        }
    }

    /// How long the timer may sleep: until the dispatcher's deadline, at most the fallback.
    fn timer_sleep_us(&self) -> u64 {
        let at = self.dispatch.lock().at;
        let now = self.uptime_ns();
        let us = match at {
            Some(t) => t.saturating_sub(now) / 1000,
            None => dispatch::FALLBACK_NS / 1000,
        };
        us.clamp(TIMER_MIN_US, dispatch::FALLBACK_NS / 1000)
    }
}

/// The dmesg line (on `dev`) and errno of a refused knob value.
fn knob_refused(dev: &Device, knob: &str, input: &[u8], e: KnobError) -> Error {
    let text = core::str::from_utf8(input).map(str::trim).unwrap_or("(not text)");
    match e {
        KnobError::OutOfRange { min, max } => dev_warn!(dev, "{}: {} is outside {}..={} (EINVAL)\n", knob, text, min, max),
        _ => dev_warn!(dev, "{}: '{}': {} (EINVAL)\n", knob, text, e.reason()),
    }
    EINVAL
}

/// The dispatcher's timer (rust/periodic.rs runs it on the GPU's `gpuvm-sched` queue).
pub(crate) struct SchedTimer(pub(crate) Arc<GpuShared>);

impl periodic::Tick for SchedTimer {
    fn tick(&self) -> u64 {
        let due = self.0.dispatch.lock().at.is_some_and(|t| t <= self.0.uptime_ns());
        if due {
            self.0.dispatch_poll_and_refresh();
        }
        self.0.timer_sleep_us()
    }
}
