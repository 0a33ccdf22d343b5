// SPDX-License-Identifier: GPL-2.0
//! When shadow page tables are synced (the policy; `shadow_vm` is the mechanism).
//!
//! Naive mode syncs at the guest's TLB flush, as GPUvm did. Lazy mode (GPUvm's "lazy
//! shadowing") only records the flush and syncs at the next point where the GPU could use the
//! address space. GPUvm's lazy mode missed some of those points (digest §13.4: only IB_PUT,
//! WRCMD, PCOPY instance writes and RAMIN writes); here every event that can make the host
//! GPU walk a shadow is a [`UsePoint`], and the glue must call [`before_use`] at each. One of
//! them is the flush itself: a channel already past its doorbell may be released by a CPU
//! write the mediator never sees ([`UsePoint::InFlight`]; the mediator decides when it holds).

use core::ops::DerefMut;

use crate::memory::{SysMem, Vram};
use crate::partition::Slice;
use crate::shadow_vm::{PdeShadow, ShadowVm, TableAlloc};

/// The sysfs `lazy_shadow` knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Sync at every guest TLB flush.
    Naive,
    /// Sync at the next use after a flush.
    Lazy,
}

/// Events after which the host GPU may walk a shadow address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsePoint {
    /// A doorbell (GP_PUT write) on a channel of the space.
    Doorbell,
    /// A channel of the space is bound (its shadow instance block is written).
    ChannelBind,
    /// A runlist containing a channel of the space is committed.
    RunlistCommit,
    /// A channel of the space is kicked.
    Kick,
    /// A channel of the space is made runnable (the scheduler may pick it at once).
    Runnable,
    /// A trapped BAR1/BAR3 access is resolved through the space (BAR VMs).
    BarAccess,
    /// A guest TLB flush of the space while one of its channels has submitted work the GPU
    /// has not finished (it may be waiting on a semaphore acquire that the CPU releases with
    /// a plain memory write, which the mediator never sees): synced at the flush, as naive
    /// mode would.
    InFlight,
}

/// The things a sync needs besides the shadow itself.
pub struct SyncEnv<'a, V: Vram + ?Sized, Y: SysMem + ?Sized, A: TableAlloc + ?Sized> {
    /// Host VRAM (guest tables are read through `slice`).
    pub vram: &'a mut V,
    /// The vGPU's partition.
    pub slice: &'a Slice,
    /// Guest system-memory pinning.
    pub sys: &'a mut Y,
    /// Host VRAM for shadow tables.
    pub alloc: &'a mut A,
}

/// A guest TLB flush of `vm`. Returns whether the shadow was synced now (the glue then issues
/// the host TLB flush for the shadow PD; in lazy mode it does so after the deferred sync).
pub fn on_flush<S, V, Y, A>(mode: SyncMode, vm: &mut ShadowVm<S>, env: &mut SyncEnv<'_, V, Y, A>) -> bool
where
    S: DerefMut<Target = [PdeShadow]>,
    V: Vram + ?Sized,
    Y: SysMem + ?Sized,
    A: TableAlloc + ?Sized,
{
    vm.flush();
    match mode {
        SyncMode::Naive => {
            vm.sync(env.vram, env.slice, env.sys, env.alloc);
            true
        }
        SyncMode::Lazy => false,
    }
}

/// The GPU is about to use `vm` (`_why` documents the call site). Syncs if a flush is pending,
/// in either mode: a naive-mode space is already clean unless it was never synced. Returns
/// whether a sync happened (the glue then flushes the host TLB for the shadow PD).
pub fn before_use<S, V, Y, A>(_why: UsePoint, vm: &mut ShadowVm<S>, env: &mut SyncEnv<'_, V, Y, A>) -> bool
where
    S: DerefMut<Target = [PdeShadow]>,
    V: Vram + ?Sized,
    Y: SysMem + ?Sized,
    A: TableAlloc + ?Sized,
{
    if !vm.needs_sync() {
        return false;
    }
    vm.sync(env.vram, env.slice, env.sys, env.alloc);
    true
}
