//! The kernel module's pure-logic files, compiled for the host exactly as the module includes
//! them (by path, with `crate::gf100` providing the register declarations).
#![no_std]

#[path = "../../../uapi/config_space.rs"]
pub mod config_space;
#[path = "../../../uapi/gf100.rs"]
pub mod gf100;
#[path = "../../../uapi/intr_tree.rs"]
pub mod intr_tree;

#[path = "../../../shadow/partition.rs"]
pub mod partition;
#[path = "../../../shadow/pci_config.rs"]
pub mod pci_config;

#[path = "../../../shadow/host_init.rs"]
pub mod host_init;

#[path = "../../../shadow/memory.rs"]
pub mod memory;
#[path = "../../../shadow/pagetable.rs"]
pub mod pagetable;
#[path = "../../../shadow/shadow_vm.rs"]
pub mod shadow_vm;
#[path = "../../../shadow/sync_policy.rs"]
pub mod sync_policy;
#[path = "../../../shadow/host_pool.rs"]
pub mod host_pool;
#[path = "../../../shadow/regs.rs"]
pub mod regs;
#[path = "../../../shadow/vregs.rs"]
pub mod vregs;
#[path = "../../../shadow/channel.rs"]
pub mod channel;
#[path = "../../../shadow/host_gpu.rs"]
pub mod host_gpu;
#[path = "../../../shadow/host_channel.rs"]
pub mod host_channel;
#[path = "../../../shadow/scrub.rs"]
pub mod scrub;
#[path = "../../../shadow/guest_fetch.rs"]
pub mod guest_fetch;
#[path = "../../../shadow/bar_remap.rs"]
pub mod bar_remap;
#[path = "../../../shadow/mediator.rs"]
pub mod mediator;
#[path = "../../../shadow/watchdog.rs"]
pub mod watchdog;
#[path = "../../../shadow/dispatch.rs"]
pub mod dispatch;
#[path = "../../../sched/mod.rs"]
pub mod sched;

extern crate alloc;

/// On the host the mediator's tables live in `Vec`s (`KVec`s in the kernel).
pub struct HostStorage;

impl mediator::Storage for HostStorage {
    type Vec<T: Default> = alloc::vec::Vec<T>;
    fn with_len<T: Default>(len: usize) -> Option<alloc::vec::Vec<T>> {
        let mut v = alloc::vec::Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize_with(len, T::default);
        Some(v)
    }
}
