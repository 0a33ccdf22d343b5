// SPDX-License-Identifier: GPL-2.0
//! Static sysfs attributes and groups (the 7.3 kernel crate has no sysfs abstraction).
//!
//! Attributes are built in `const` context into `static`s: [`DeviceAttribute`] wraps a
//! `struct device_attribute` whose show/store are monomorphised trampolines over a safe
//! [`Attr`] implementation; [`AttrGroup`] and [`GroupList`] build the NULL-terminated arrays
//! the driver core wants.

#![allow(unreachable_pub, dead_code)]

use crate::bindings as sys;
use core::cell::UnsafeCell;
use kernel::{device, ffi, prelude::*, str::Formatter};

/// The data an attribute's callbacks receive, found from the `struct device` by the wrapper
/// that declares the attribute (e.g. the driver data of a bound device).
pub trait AttrTarget {
    /// What show/store get.
    type Data<'a>;
    /// # Safety
    /// `dev` must be a live device for which the attribute is registered, and the data must
    /// stay valid while the callback runs (sysfs drains callbacks before removal). `None`:
    /// the data is already gone (device going away); the callback fails with ENODEV.
    unsafe fn data<'a>(dev: *mut sys::device) -> Option<Self::Data<'a>>;
}

/// One attribute: `show` formats, `store` parses (default: read-only).
pub trait Attr<T: AttrTarget> {
    /// Formats the value into the sysfs buffer.
    fn show(data: T::Data<'_>, f: &mut Formatter<'_>) -> Result;
    /// Parses a written value.
    fn store(_data: T::Data<'_>, _input: &[u8]) -> Result {
        Err(EACCES)
    }
}

/// Plain devices: the callbacks get the `struct device` itself.
pub struct PlainDevice;

impl AttrTarget for PlainDevice {
    type Data<'a> = &'a device::Device;
    /// # Safety
    /// As [`AttrTarget::data`].
    unsafe fn data<'a>(dev: *mut sys::device) -> Option<&'a device::Device> {
        // SAFETY: per the trait's contract `dev` is live for the callback.
        Some(unsafe { device::Device::from_raw(dev) })
    }
}

/// `device_attribute.show` of a [`DeviceAttribute`] built for `T` and `A`.
///
/// # Safety
/// `dev` must be a live device on which this attribute is registered, under the conditions
/// of [`AttrTarget::data`]; `buf` must be a sysfs buffer of `PAGE_SIZE` bytes, writable and
/// exclusive for the call. sysfs guarantees both for a registered attribute.
unsafe extern "C" fn show_tramp<T: AttrTarget, A: Attr<T>>(
    dev: *mut sys::device,
    _attr: *mut sys::device_attribute,
    buf: *mut ffi::c_char,
) -> isize {
    // SAFETY: sysfs calls show on a live device with the attribute registered and a buffer of
    // PAGE_SIZE bytes.
    let (data, buf) = unsafe {
        (T::data(dev), core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE))
    };
    let Some(data) = data else { return ENODEV.to_errno() as isize };
    let mut f = Formatter::new(buf);
    match A::show(data, &mut f) {
        Ok(()) => f.bytes_written() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// `device_attribute.store` of a [`DeviceAttribute`] built for `T` and `A`.
///
/// # Safety
/// As [`show_tramp`], except that `buf` must be readable for `count` bytes.
unsafe extern "C" fn store_tramp<T: AttrTarget, A: Attr<T>>(
    dev: *mut sys::device,
    _attr: *mut sys::device_attribute,
    buf: *const ffi::c_char,
    count: usize,
) -> isize {
    // SAFETY: sysfs calls store on a live device with `count` readable bytes at `buf`.
    let (data, input) = unsafe { (T::data(dev), core::slice::from_raw_parts(buf.cast::<u8>(), count)) };
    let Some(data) = data else { return ENODEV.to_errno() as isize };
    match A::store(data, input) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// A `struct device_attribute` in a `static`.
#[repr(transparent)]
pub struct DeviceAttribute(UnsafeCell<sys::device_attribute>);

// SAFETY: after construction only the sysfs core touches the contents, under its own locking.
unsafe impl Sync for DeviceAttribute {}

impl DeviceAttribute {
    const fn build<T: AttrTarget, A: Attr<T>>(name: &'static CStr, mode: u16, writable: bool) -> Self {
        let mut a: sys::device_attribute = pin_init::zeroed();
        a.attr.name = kernel::str::as_char_ptr_in_const_context(name);
        a.attr.mode = mode;
        a.__bindgen_anon_1.show = Some(show_tramp::<T, A>);
        if writable {
            a.__bindgen_anon_2.store = Some(store_tramp::<T, A>);
        }
        Self(UnsafeCell::new(a))
    }

    /// A read-only (0444) attribute.
    pub const fn ro<T: AttrTarget, A: Attr<T>>(name: &'static CStr) -> Self {
        Self::build::<T, A>(name, 0o444, false)
    }

    /// A root-writable (0644) attribute.
    pub const fn rw<T: AttrTarget, A: Attr<T>>(name: &'static CStr) -> Self {
        Self::build::<T, A>(name, 0o644, true)
    }

    /// The embedded `struct attribute`, for attribute lists.
    pub const fn attr(&'static self) -> *mut sys::attribute {
        // SAFETY: a place projection into a static; nothing is read.
        unsafe { &raw mut (*self.0.get()).attr }
    }
}

/// A NULL-terminated `struct attribute *[]`.
#[repr(transparent)]
pub struct AttrList<const N: usize>(UnsafeCell<[*mut sys::attribute; N]>);

// SAFETY: immutable after construction.
unsafe impl<const N: usize> Sync for AttrList<N> {}

impl<const N: usize> AttrList<N> {
    /// `attrs` must end with a null pointer.
    pub const fn new(attrs: [*mut sys::attribute; N]) -> Self {
        assert!(N > 0 && attrs[N - 1].is_null(), "attribute list must be NULL-terminated");
        Self(UnsafeCell::new(attrs))
    }
}

/// A `struct attribute_group`, shown as subdirectory `name` if given.
#[repr(transparent)]
pub struct AttrGroup(UnsafeCell<sys::attribute_group>);

// SAFETY: immutable after construction.
unsafe impl Sync for AttrGroup {}

impl AttrGroup {
    /// A group over a static attribute list.
    pub const fn new<const N: usize>(name: Option<&'static CStr>, attrs: &'static AttrList<N>) -> Self {
        let mut g: sys::attribute_group = pin_init::zeroed();
        if let Some(n) = name {
            g.name = kernel::str::as_char_ptr_in_const_context(n);
        }
        g.__bindgen_anon_2.attrs = attrs.0.get().cast();
        Self(UnsafeCell::new(g))
    }

    /// The raw group pointer.
    pub const fn as_ptr(&'static self) -> *const sys::attribute_group {
        self.0.get()
    }
}

/// A NULL-terminated `const struct attribute_group *[]`.
#[repr(transparent)]
pub struct GroupList<const N: usize>(UnsafeCell<[*const sys::attribute_group; N]>);

// SAFETY: immutable after construction.
unsafe impl<const N: usize> Sync for GroupList<N> {}

impl<const N: usize> GroupList<N> {
    /// `groups` must end with a null pointer.
    pub const fn new(groups: [*const sys::attribute_group; N]) -> Self {
        assert!(N > 0 && groups[N - 1].is_null(), "group list must be NULL-terminated");
        Self(UnsafeCell::new(groups))
    }

    /// The raw array pointer.
    pub const fn as_ptr(&'static self) -> *const *const sys::attribute_group {
        self.0.get().cast()
    }
}

/// Adds `groups` to `dev`'s sysfs directory until the returned guard drops.
pub struct GroupsRegistration {
    dev: kernel::sync::aref::ARef<device::Device>,
    groups: *const *const sys::attribute_group,
}

// SAFETY: the groups are statics; the device reference is refcounted.
unsafe impl Send for GroupsRegistration {}
// SAFETY: `&Self` exposes nothing.
unsafe impl Sync for GroupsRegistration {}

impl GroupsRegistration {
    /// Creates the groups' files on `dev`.
    pub fn new<const N: usize>(dev: &device::Device, groups: &'static GroupList<N>) -> Result<Self> {
        let raw = core::ptr::from_ref(dev).cast_mut().cast::<sys::device>();
        // SAFETY: `dev` is live; `groups` is a static NULL-terminated list.
        kernel::error::to_result(unsafe { sys::device_add_groups(raw, groups.as_ptr()) })?;
        Ok(Self { dev: dev.into(), groups: groups.as_ptr() })
    }
}

impl Drop for GroupsRegistration {
    fn drop(&mut self) {
        let raw = core::ptr::from_ref(&*self.dev).cast_mut().cast::<sys::device>();
        // SAFETY: added in `new` on the same device; removal drains running callbacks.
        unsafe { sys::device_remove_groups(raw, self.groups) };
    }
}

/// Parses a sysfs write as an unsigned decimal number ("42\n").
pub fn parse_u32(input: &[u8]) -> Result<u32> {
    let s = core::str::from_utf8(input).map_err(|_| EINVAL)?.trim();
    s.parse::<u32>().map_err(|_| EINVAL)
}

/// Attribute target for a device bound to a Rust bus driver of this crate, whose driver data
/// is a `Pin<KBox<D>>` stored with `dev_set_drvdata` (what `kernel::pci::Adapter` does with
/// the value `probe` returns). Callbacks get `&D`.
pub struct BoundDriverData<D>(core::marker::PhantomData<D>);

impl<D: 'static> AttrTarget for BoundDriverData<D> {
    type Data<'a> = &'a D;
    /// # Safety
    /// As [`AttrTarget::data`].
    unsafe fn data<'a>(dev: *mut sys::device) -> Option<&'a D> {
        // SAFETY: the caller registered the attribute on a device bound to the driver whose
        // data is `D`, and removes it before that data is freed (sysfs drains callbacks);
        // drvdata is cleared before the data is dropped, hence the null check.
        let p = unsafe { sys::dev_get_drvdata(dev) };
        // SAFETY: see above.
        (!p.is_null()).then(|| unsafe { &*p.cast::<D>() })
    }
}
