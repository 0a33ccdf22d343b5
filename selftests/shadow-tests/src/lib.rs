//! The kernel module's pure-logic files, compiled for the host exactly as the module includes
//! them (by path, with `crate::gf100` providing the register declarations).
#![no_std]

#[path = "../../../uapi/gf100.rs"]
pub mod gf100;

#[path = "../../../shadow/partition.rs"]
pub mod partition;
#[path = "../../../shadow/pci_config.rs"]
pub mod pci_config;

#[path = "../../../shadow/memory.rs"]
pub mod memory;
#[path = "../../../shadow/pagetable.rs"]
pub mod pagetable;
