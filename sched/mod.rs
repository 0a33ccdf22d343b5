// SPDX-License-Identifier: GPL-2.0
//! Sharing GPU time between the vGPUs of one GPU: which vGPU's queued submission goes to the
//! GPU next, and when.
//!
//! Fermi runs a kernel to completion once it has started, so a scheduler can only act between
//! submissions: the mediator queues each doorbell (a guest GP_PUT write) instead of forwarding
//! it, and forwards one vGPU's submission when the GPU is free. The split follows
//! `shadow/sync_policy.rs` (policy) and `shadow/shadow_vm.rs` (mechanism):
//! - [`scheduler::Scheduler`] is what the mediator drives: it keeps the shared [`account`]
//!   (who is queued, who runs, GPU and wait time) and asks the active policy only when the GPU
//!   is free and work is queued. It checks each answer, so a wrong policy cannot lose or
//!   invent a submission, nor idle the GPU beyond the wait it announced.
//! - a [`policy::Policy`] only decides: [`fifo`] (arrival order), [`credit`] (weighted credit,
//!   as in Xen and GPUvm), [`band`] (Gdev's utilisation-aware credit with a bounded wait).
//! - [`knobs`] parses and validates the sysfs values; every error becomes EINVAL.
//!
//! Pure `core` code: no allocation (at most [`account::MAX_VGPUS`] vGPUs with
//! [`account::QUEUE_DEPTH`] queued submissions each), no floating point, no panics (time is
//! integer nanoseconds, arithmetic saturates). Compiled into the module and into
//! `selftests/sched-tests`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::float_arithmetic)]

pub mod account;
pub mod band;
pub mod credit;
pub mod fifo;
pub mod knobs;
pub mod policy;
pub mod scheduler;
