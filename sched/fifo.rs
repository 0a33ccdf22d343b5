// SPDX-License-Identifier: GPL-2.0
//! FIFO: submissions go to the GPU in the order their doorbells rang, whichever vGPU rang.
//!
//! GPUvm's baseline. It ignores weights, so a vGPU with long kernels or a deep queue takes
//! the GPU in proportion to what it submits; it is fair only to equal workloads. It needs no
//! state of its own: the arrival order is in the account.

use super::account::{Account, Ns};
use super::knobs::PolicyKind;
use super::policy::{Decision, Policy};

/// The FIFO policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fifo;

impl Policy for Fifo {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Fifo
    }

    fn pick(&mut self, acct: &Account, _now: Ns) -> Decision {
        acct.oldest_queued().map_or(Decision::Idle, Decision::Run)
    }
}
