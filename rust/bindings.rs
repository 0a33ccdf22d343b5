// SPDX-License-Identifier: GPL-2.0
//! Raw vfio/mdev bindings, generated at build time by `rust/gen_bindings.sh` from this kernel's
//! own bindgen flags (so struct layouts match this kernel's configuration). Only `rust/` may use
//! them; everything above goes through safe wrappers.
//!
//! Types these headers merely use (struct device, mutex, ...) are not generated
//! (`--no-recursive-allowlist`): they come from `kernel::bindings`, so both sets of bindings
//! share one Rust type per C type and pointers pass between them without casts.
#![allow(
    clippy::all,
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    unused_imports
)]

pub(crate) use kernel::bindings::*;
use kernel::ffi;
use pin_init::{MaybeZeroable, Zeroable};

// SAFETY: `__BindgenBitfieldUnit<Storage>` is a newtype around `Storage`, so it is all-zeroes
// valid whenever `Storage` is (the kernel's own rust/bindings make the same statement).
unsafe impl<Storage> Zeroable for __BindgenBitfieldUnit<Storage> where Storage: Zeroable {}

include!("generated/vfio_mdev.rs");
