// SPDX-License-Identifier: GPL-2.0
//! A PCI device's MSI vector with a threaded handler, owned without borrowing the device (the
//! kernel crate's `pci::IrqVectorRegistration` borrows it, which does not fit data that vGPUs
//! share).

#![allow(unreachable_pub, dead_code)]

use crate::bindings as sys;
use kernel::{device, ffi, pci, prelude::*, sync::aref::ARef, sync::Arc};

/// What the hard-IRQ half decided.
pub enum IrqReturn {
    /// Not ours.
    None,
    /// Fully handled.
    Handled,
    /// Handled; run [`Handler::thread`] in process context.
    WakeThread,
}

/// An interrupt handler: `handle` runs in hard-IRQ context (acknowledge, record), `thread`
/// in a kernel thread where it may sleep (deliver to vGPUs).
pub trait Handler: Send + Sync + 'static {
    /// The hard-IRQ half.
    fn handle(&self) -> IrqReturn;
    /// The threaded half, after `WakeThread`.
    fn thread(&self) {}
}

/// One MSI vector of `pdev` with `T` attached; freed (handler first, then the vector) on drop.
pub struct MsiRegistration<T: Handler> {
    pdev: ARef<pci::Device>,
    irq: u32,
    handler: Arc<T>,
}

impl<T: Handler> MsiRegistration<T> {
    /// Allocates one MSI vector on `pdev` and requests it for `handler`.
    pub fn new(pdev: &pci::Device<device::Bound>, name: &'static CStr, handler: Arc<T>) -> Result<Self> {
        let raw = core::ptr::from_ref(pdev).cast_mut().cast::<sys::pci_dev>();
        // SAFETY: `pdev` is a bound, live PCI device (`pci::Device` wraps `struct pci_dev`).
        let n = unsafe { sys::pci_alloc_irq_vectors(raw, 1, 1, sys::PCI_IRQ_MSI) };
        kernel::error::to_result(n)?;
        // SAFETY: one vector was allocated above.
        let irq = unsafe { sys::pci_irq_vector(raw, 0) };
        let cookie = Arc::as_ptr(&handler).cast_mut().cast::<ffi::c_void>();
        let ret = if irq < 0 {
            irq
        } else {
            // SAFETY: `cookie` stays valid until `free_irq` in drop (we hold the Arc); `name`
            // is 'static. IRQF_ONESHOT keeps the line masked until the thread has run.
            unsafe {
                sys::request_threaded_irq(
                    irq as u32,
                    Some(Self::handle_cb),
                    Some(Self::thread_cb),
                    sys::IRQF_ONESHOT as _,
                    name.as_char_ptr(),
                    cookie,
                )
            }
        };
        if ret < 0 {
            // SAFETY: undoes the allocation above.
            unsafe { sys::pci_free_irq_vectors(raw) };
            return Err(Error::from_errno(ret));
        }
        let plain: &pci::Device = pdev;
        Ok(Self { pdev: plain.into(), irq: irq as u32, handler })
    }

    /// The Linux IRQ number.
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// The hard-IRQ handler.
    ///
    /// # Safety
    /// `cookie` must be the `Arc<T>` payload registered in [`Self::new`], which stays alive
    /// until `free_irq()` in drop returns (that waits for running handlers).
    unsafe extern "C" fn handle_cb(_irq: ffi::c_int, cookie: *mut ffi::c_void) -> sys::irqreturn_t {
        // SAFETY: per the function's safety requirements.
        let handler = unsafe { &*cookie.cast::<T>() };
        match handler.handle() {
            IrqReturn::None => sys::irqreturn::IRQ_NONE,
            IrqReturn::Handled => sys::irqreturn::IRQ_HANDLED,
            IrqReturn::WakeThread => sys::irqreturn::IRQ_WAKE_THREAD,
        }
    }

    /// The threaded handler.
    ///
    /// # Safety
    /// As [`Self::handle_cb`] (`free_irq()` also waits for the thread).
    unsafe extern "C" fn thread_cb(_irq: ffi::c_int, cookie: *mut ffi::c_void) -> sys::irqreturn_t {
        // SAFETY: per the function's safety requirements.
        let handler = unsafe { &*cookie.cast::<T>() };
        handler.thread();
        sys::irqreturn::IRQ_HANDLED
    }
}

impl<T: Handler> Drop for MsiRegistration<T> {
    fn drop(&mut self) {
        let raw = core::ptr::from_ref(&*self.pdev).cast_mut().cast::<sys::pci_dev>();
        // SAFETY: requested in `new` with this cookie; free_irq waits for running handlers
        // and threads.
        unsafe { sys::free_irq(self.irq, Arc::as_ptr(&self.handler).cast_mut().cast()) };
        // SAFETY: allocated in `new`.
        unsafe { sys::pci_free_irq_vectors(raw) };
    }
}
