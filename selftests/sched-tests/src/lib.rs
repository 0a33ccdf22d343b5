//! The kernel module's scheduler (`sched/`), compiled for the host exactly as the module
//! includes it (by path, `core` only: the crate is `no_std`, so a `std` path in `sched/`
//! fails to build here too), a simulated GPU to drive it, and the figures it yields.
#![no_std]

#[path = "../../../sched/mod.rs"]
pub mod sched;

pub mod bench;
pub mod sim;
