// SPDX-License-Identifier: GPL-2.0
//! A reference to an eventfd context (`struct eventfd_ctx`), as VFIO's SET_IRQS hands them in.

#![allow(unreachable_pub, dead_code)]

use crate::bindings as sys;
use core::ptr::NonNull;
use kernel::prelude::*;

/// An eventfd the kernel can signal; the reference is dropped with the value.
pub struct EventFd(NonNull<sys::eventfd_ctx>);

// SAFETY: eventfd contexts are refcounted and may be signalled and put from any context.
unsafe impl Send for EventFd {}
// SAFETY: `signal` takes `&self` and eventfd_signal() is thread-safe.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// Takes a reference to the eventfd behind file descriptor `fd` of the calling process.
    pub fn from_fd(fd: i32) -> Result<EventFd> {
        let mut err = 0;
        // SAFETY: plain call; a NULL return comes with the errno in `err`.
        let ctx = unsafe { sys::gpuvm_helper_eventfd_get(fd, &mut err) };
        NonNull::new(ctx).map(EventFd).ok_or_else(|| Error::from_errno(err))
    }

    /// Adds one to the counter and wakes waiters. Callable from any context.
    pub fn signal(&self) {
        // SAFETY: we hold a reference to a live context.
        unsafe { sys::gpuvm_helper_eventfd_signal(self.0.as_ptr()) }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `from_fd`.
        unsafe { sys::gpuvm_helper_eventfd_put(self.0.as_ptr()) }
    }
}
