#![no_std]
//! The guest-visible hardware contract of gpuvm, declared once.
//!
//! Every file below is plain `core`-only Rust so that the kernel module can include it by path
//! (`#[path = "uapi/gf100.rs"] mod gf100;`). The authority for the values is
//! `shared/docs/gf100-interface.md` (section numbers are cited as "§n").

pub mod config_space;
pub mod gf100;
pub mod intr_tree;
pub mod kernels;
pub mod pci_ids;
