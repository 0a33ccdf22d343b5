// SPDX-License-Identifier: GPL-2.0
//! `register!`: the fields of a 32-bit register declared once, with typed accessors.
//!
//! In the manner of nova-core's `register!` (`drivers/gpu/nova-core/regs/macros.rs`), reduced
//! to what gpuvm needs and to `core` only: this file is compiled into the kernel module, the
//! GF100 model and the guest driver alike, as a module of `gf100.rs` (which includes it by
//! path). `macro_rules!` cannot build an identifier such as `with_` + field without a proc
//! macro, so each field names its setter next to its getter.
//!
//! ```text
//! register! {
//!     /// PMC BOOT_0: which chip this is.
//!     pub Boot0(u32) @ 0x000000 {
//!         /// Stepping.
//!         7:0   stepping: u32, with_stepping;
//!         28:20 chipset: u32, with_chipset;
//!     }
//!
//!     /// An array: one register per channel, 8 bytes apart.
//!     pub ChanInst(u32)[128, stride = 8] @ 0x003000 {
//!         27:0  addr: u64 << 12, with_addr;
//!         31:31 valid: bool, with_valid;
//!     }
//!
//!     /// A layout only (no `@`), for registers that share it at unrelated offsets.
//!     pub BarInst(u32) {
//!         31:31 mode_vm: bool, with_mode_vm;
//!     }
//! }
//!
//! let v = ChanInst::default().with_addr(0x5_0000).with_valid(true);
//! assert_eq!((v.addr(), v.valid(), v.raw()), (0x5_0000, true, 0x8000_0050));
//! assert_eq!(ChanInst::index(ChanInst::offset(3)), Some(3));
//! ```
//!
//! Field types:
//! - `bool`: a single bit (`hi == lo`, checked at compile time).
//! - `u32`: the bits `hi:lo`, right-aligned.
//! - `u64 << n`: an address the register holds shifted right by `n` (rnndb's `shr="n"`): the
//!   getter shifts it back, the setter drops the low `n` bits.
//!
//! Setters keep only what fits the field, as the hardware does; every accessor is a `const fn`.
//! A register type is `repr(transparent)` over its raw `u32` (`from_raw` / `raw`) and has an
//! `OFFSET` (a fixed register) or `COUNT`, `STRIDE`, `offset(i)` and `index(off)` (an array).

/// Declares register types; see the module documentation.
macro_rules! register {
    // ---- helpers -------------------------------------------------------------------------

    // The type, its raw conversions, field accessors, compile-time checks and `Debug`.
    (@type $(#[$meta:meta])* $vis:vis $name:ident {
        $(
            $(#[$fmeta:meta])*
            $hi:literal : $lo:literal $get:ident : $ty:ident $(<< $shift:literal)? , $set:ident ;
        )*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq)]
        #[repr(transparent)]
        $vis struct $name(u32);

        #[allow(clippy::identity_op, clippy::eq_op)]
        impl $name {
            /// The register holding `raw`.
            #[inline]
            pub const fn from_raw(raw: u32) -> Self {
                Self(raw)
            }

            /// The raw 32-bit value.
            #[inline]
            pub const fn raw(self) -> u32 {
                self.0
            }

            $(
                register!(@field $(#[$fmeta])* $hi:$lo $get: $ty $(<< $shift)?, $set);
            )*
        }

        $(
            register!(@check $name $hi:$lo $get: $ty);
        )*

        impl ::core::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("raw", &::core::format_args!("{:#010x}", self.0))
                    $(.field(stringify!($get), &self.$get()))*
                    .finish()
            }
        }
    };

    // The field's bits, right-aligned (a mask of `hi - lo + 1` ones).
    (@mask $hi:literal : $lo:literal) => {
        (u32::MAX >> (31 - ($hi - $lo)))
    };

    (@field $(#[$fmeta:meta])* $hi:literal : $lo:literal $get:ident : bool, $set:ident) => {
        $(#[$fmeta])*
        #[inline]
        pub const fn $get(self) -> bool {
            (self.0 >> $lo) & 1 != 0
        }

        #[doc = concat!("This value with `", stringify!($get), "` (bit ", stringify!($lo), ") set to `v`.")]
        #[inline]
        #[must_use]
        pub const fn $set(self, v: bool) -> Self {
            Self((self.0 & !(1 << $lo)) | (v as u32) << $lo)
        }
    };

    (@field $(#[$fmeta:meta])* $hi:literal : $lo:literal $get:ident : u32, $set:ident) => {
        $(#[$fmeta])*
        #[inline]
        pub const fn $get(self) -> u32 {
            (self.0 >> $lo) & register!(@mask $hi:$lo)
        }

        #[doc = concat!(
            "This value with `", stringify!($get), "` (bits ", stringify!($hi), ":", stringify!($lo),
            ") set to the low bits of `v`."
        )]
        #[inline]
        #[must_use]
        pub const fn $set(self, v: u32) -> Self {
            let m = register!(@mask $hi:$lo) << $lo;
            Self((self.0 & !m) | ((v << $lo) & m))
        }
    };

    (@field $(#[$fmeta:meta])* $hi:literal : $lo:literal $get:ident : u64 << $shift:literal, $set:ident) => {
        $(#[$fmeta])*
        #[inline]
        pub const fn $get(self) -> u64 {
            (((self.0 >> $lo) & register!(@mask $hi:$lo)) as u64) << $shift
        }

        #[doc = concat!(
            "This value with `", stringify!($get), "` set to `v`: bits ", stringify!($hi), ":",
            stringify!($lo), " take `v >> ", stringify!($shift), "` (what fits)."
        )]
        #[inline]
        #[must_use]
        pub const fn $set(self, v: u64) -> Self {
            let m = register!(@mask $hi:$lo) << $lo;
            Self((self.0 & !m) | ((((v >> $shift) as u32) << $lo) & m))
        }
    };

    (@check $name:ident $hi:literal : $lo:literal $get:ident : bool) => {
        const _: () = assert!(
            $hi == $lo,
            concat!(stringify!($name), "::", stringify!($get), ": a bool field is one bit")
        );
    };

    (@check $name:ident $hi:literal : $lo:literal $get:ident : $ty:ident) => {
        const _: () = assert!(
            $lo <= $hi && $hi < 32,
            concat!(stringify!($name), "::", stringify!($get), ": bits must be hi:lo inside 31:0")
        );
    };

    // ---- declarations --------------------------------------------------------------------

    () => {};

    // A register at a fixed BAR0 offset.
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident(u32) @ $offset:literal { $($fields:tt)* }
        $($rest:tt)*
    ) => {
        register!(@type $(#[$meta])* $vis $name { $($fields)* });

        impl $name {
            /// BAR0 offset of the register.
            pub const OFFSET: u32 = $offset;
        }

        register!($($rest)*);
    };

    // `COUNT` registers of one layout, `STRIDE` bytes apart from `offset(0)`.
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident(u32)[$count:expr, stride = $stride:literal] @ $offset:literal {
            $($fields:tt)*
        }
        $($rest:tt)*
    ) => {
        register!(@type $(#[$meta])* $vis $name { $($fields)* });

        impl $name {
            /// Number of registers in the array.
            pub const COUNT: u32 = $count;
            /// Bytes from one register of the array to the next.
            pub const STRIDE: u32 = $stride;

            /// BAR0 offset of element `i` (`offset(COUNT)` is where the array ends).
            #[inline]
            pub const fn offset(i: u32) -> u32 {
                $offset + $stride * i
            }

            /// The element whose register is at BAR0 offset `off`, if it is one.
            #[inline]
            pub const fn index(off: u32) -> Option<u32> {
                if off < $offset || (off - $offset) % $stride != 0 || (off - $offset) / $stride >= Self::COUNT {
                    return None;
                }
                Some((off - $offset) / $stride)
            }
        }

        register!($($rest)*);
    };

    // A layout without an offset: registers at unrelated offsets that share it.
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident(u32) { $($fields:tt)* }
        $($rest:tt)*
    ) => {
        register!(@type $(#[$meta])* $vis $name { $($fields)* });
        register!($($rest)*);
    };
}

// For path-based use outside `gf100.rs` (`use crate::gf100::register::register;`); `gf100.rs`
// itself has the macro by `#[macro_use]`.
#[allow(unused_imports)]
pub(crate) use register;

#[cfg(test)]
#[allow(dead_code)]
mod tests {
    register! {
        /// A register with one field of each kind.
        pub Fixed(u32) @ 0x1234 {
            0:0   flag: bool, with_flag;
            7:4   nibble: u32, with_nibble;
            31:12 addr: u64 << 12, with_addr;
        }

        /// An array.
        pub Array(u32)[4, stride = 0x10] @ 0x2000 {
            31:0  all: u32, with_all;
        }

        /// A whole register as the high half of a 64-bit value.
        pub High(u32) {
            31:0  va: u64 << 32, with_va;
        }
    }

    #[test]
    fn fields_read_and_write_their_bits_only() {
        assert_eq!(Fixed::OFFSET, 0x1234);
        let r = Fixed::from_raw(0x0000_0f0e);
        assert_eq!((r.flag(), r.nibble(), r.addr()), (false, 0, 0));
        let r = r.with_flag(true).with_nibble(0x5).with_addr(0x1234_5678);
        assert_eq!(r.raw(), 0x1234_5f5f);
        assert_eq!((r.flag(), r.nibble(), r.addr()), (true, 5, 0x1234_5000));
        assert_eq!(r.with_flag(false).raw(), 0x1234_5f5e);
        // Values are cut to the field, as the hardware keeps only those bits.
        assert_eq!(Fixed::default().with_nibble(0x1f).raw(), 0xf0);
        assert_eq!(Fixed::default().with_addr(0x1_0000_0000_0000).addr(), 0);
        assert_eq!(High::default().with_va(0x1_2345_6789).raw(), 1);
        assert_eq!(High::from_raw(2).va(), 0x2_0000_0000);
        assert_eq!(Array::default().with_all(u32::MAX).all(), u32::MAX);
    }

    #[test]
    fn arrays_map_indices_to_offsets_and_back() {
        assert_eq!((Array::COUNT, Array::STRIDE), (4, 0x10));
        assert_eq!(Array::offset(0), 0x2000);
        assert_eq!(Array::offset(3), 0x2030);
        for i in 0..Array::COUNT {
            assert_eq!(Array::index(Array::offset(i)), Some(i));
        }
        for off in [0, 0x1ff0, 0x2004, 0x2008, 0x203c, Array::offset(Array::COUNT), u32::MAX] {
            assert_eq!(Array::index(off), None, "{off:#x}");
        }
    }
}
