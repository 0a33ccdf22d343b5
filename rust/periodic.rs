// SPDX-License-Identifier: GPL-2.0
//! A periodic job on a workqueue the module owns (the kernel crate offers only the system
//! queues, and no way to wait for a delayed item at unbind). The job is one work item that
//! sleeps between ticks; dropping the [`Periodic`] tells it to stop and destroys the queue,
//! which waits until the item has returned, so nothing of the job runs after the drop.

#![allow(unreachable_pub, dead_code)]

use crate::bindings as sys;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    prelude::*,
    sync::Arc,
    time::{delay::fsleep, Delta},
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

/// What a [`Periodic`] runs.
pub trait Tick: Send + Sync + 'static {
    /// One tick; returns how long to sleep before the next (microseconds).
    fn tick(&self) -> u64;
}

/// Longest single sleep of the job: how long a drop may wait for it to notice.
const SLEEP_SLICE_US: u64 = 20_000;

#[pin_data]
struct Job<T: Tick> {
    #[pin]
    work: Work<Job<T>>,
    stop: AtomicBool,
    target: Arc<T>,
}

impl_has_work! {
    impl{T: Tick} HasWork<Job<T>> for Job<T> { self.work }
}

impl<T: Tick> WorkItem for Job<T> {
    type Pointer = Arc<Job<T>>;

    fn run(this: Arc<Job<T>>) {
        let mut wait_us = 0u64;
        while !this.stop.load(Ordering::Acquire) {
            if wait_us > 0 {
                let slice = wait_us.min(SLEEP_SLICE_US);
                fsleep(Delta::from_micros(slice as i64));
                wait_us -= slice;
                continue;
            }
            wait_us = this.target.tick().max(1);
        }
    }
}

/// `T::tick` run over and over on queue `name` until dropped.
pub struct Periodic<T: Tick> {
    wq: NonNull<sys::workqueue_struct>,
    job: Arc<Job<T>>,
}

// SAFETY: the queue pointer is only used to destroy the queue once, in `drop`; a workqueue may
// be used and destroyed from any thread.
unsafe impl<T: Tick> Send for Periodic<T> {}
// SAFETY: `&Periodic` gives no access to the queue.
unsafe impl<T: Tick> Sync for Periodic<T> {}

impl<T: Tick> Periodic<T> {
    /// Starts ticking `target` on a new ordered queue named `name`.
    pub fn start(name: &'static CStr, target: Arc<T>) -> Result<Self> {
        // SAFETY: `name` is a NUL-terminated string that outlives the queue (static); the
        // helper passes it as the "%s" argument of alloc_ordered_workqueue().
        let raw = unsafe { sys::gpuvm_helper_alloc_ordered_wq(name.as_char_ptr()) };
        let wq = NonNull::new(raw).ok_or(ENOMEM)?;
        let job = match Arc::pin_init(pin_init!(Job { work <- new_work!("gpuvm::Periodic"), stop: AtomicBool::new(false), target }), GFP_KERNEL) {
            Ok(j) => j,
            Err(e) => {
                // SAFETY: allocated above, nothing queued on it.
                unsafe { sys::gpuvm_helper_destroy_wq(wq.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: `wq` is a live queue until `drop` destroys it, after the job returned.
        let queue = unsafe { workqueue::Queue::from_raw(wq.as_ptr()) };
        // A fresh item cannot be queued already.
        let _ = queue.enqueue(job.clone());
        Ok(Self { wq, job })
    }
}

impl<T: Tick> Drop for Periodic<T> {
    fn drop(&mut self) {
        self.job.stop.store(true, Ordering::Release);
        // SAFETY: the queue was allocated in `start` and is destroyed only here; destroying
        // it waits until the job (which saw `stop`) has returned.
        unsafe { sys::gpuvm_helper_destroy_wq(self.wq.as_ptr()) };
    }
}
