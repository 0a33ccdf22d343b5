// SPDX-License-Identifier: GPL-2.0
//! The mediated-device bus: `struct mdev_driver`, `struct mdev_parent`, `struct mdev_type`,
//! `struct mdev_device` (C header: `include/linux/mdev.h`).
//!
//! A [`Driver`] is registered once ([`DriverRegistration`], which also fills the driver's
//! own [`DriverSlot`], [`Driver::SLOT`], so PCI probe code can find it); each physical device
//! becomes a [`Parent`] of that driver offering a fixed list of types. Creating an mdev
//! through sysfs calls [`Driver::probe`], whose result is kept as the mdev's driver data
//! until [`Driver::remove`].

#![allow(unreachable_pub, dead_code)]

use crate::{bindings as sys, rust_sysfs as sysfs};
use core::{
    marker::PhantomData,
    pin::Pin,
    sync::atomic::{AtomicPtr, AtomicUsize, Ordering},
};
use kernel::{
    device,
    error::{from_result, to_result},
    ffi,
    prelude::*,
    str::Formatter,
    sync::aref::ARef,
    time::{delay::fsleep, Delta},
    types::{ForeignOwnable, Opaque},
    ThisModule,
};

/// A mediated device (`struct mdev_device`), seen during probe/remove.
#[repr(transparent)]
pub struct Device(Opaque<sys::mdev_device>);

impl Device {
    fn as_raw(&self) -> *mut sys::mdev_device {
        self.0.get()
    }

    /// # Safety
    /// `ptr` must point to a live `mdev_device` for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut sys::mdev_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper.
        unsafe { &*ptr.cast() }
    }

    /// The UUID written to `create`.
    pub fn uuid(&self) -> [u8; 16] {
        // SAFETY: set before the device is added, never changed.
        unsafe { (*self.as_raw()).uuid.b }
    }

    /// The mdev's `struct device`, bound to our driver while probe/remove run.
    pub fn as_bound(&self) -> &device::Device<device::Bound> {
        // SAFETY: `dev` is embedded in the live mdev; probe and remove run with it bound.
        unsafe { device::Device::from_raw(&raw mut (*self.as_raw()).dev) }
    }
}

/// One mdev type (a directory under `mdev_supported_types/`) carrying driver data `D`.
/// The core embeds a kobject, so a type never moves while its parent is registered.
#[repr(C)]
pub struct Type<D> {
    raw: Opaque<sys::mdev_type>,
    data: D,
}

impl<D> Type<D> {
    /// # Safety
    /// `ptr` must be the `mdev_type` of a live `Type<D>`.
    unsafe fn from_raw<'a>(ptr: *mut sys::mdev_type) -> &'a Self {
        // SAFETY: per the safety requirements.
        unsafe { &*kernel::container_of!(Opaque::cast_from(ptr), Self, raw) }
    }

    /// The driver's data for this type.
    pub fn data(&self) -> &D {
        &self.data
    }
}

/// A type to offer: directory `<parent driver>-<sysfs_name>`, `name` shows `pretty_name`.
pub struct TypeDesc<D> {
    /// Directory name suffix.
    pub sysfs_name: &'static CStr,
    /// Human-readable name.
    pub pretty_name: &'static CStr,
    /// Driver data.
    pub data: D,
}

/// An mdev vendor driver.
pub trait Driver: Sized + 'static {
    /// Per parent (the physical device).
    type ParentData: Send + Sync;
    /// Per type.
    type TypeData: Send + Sync;
    /// Per mdev, from probe to remove.
    type Data: Send + Sync;

    /// `device_api` in sysfs, e.g. `c"vfio-pci"`.
    const DEVICE_API: &'static CStr;
    /// Where the registered driver is published for [`Parent::register`]: a `static` of
    /// the driver's own, so parents are only ever registered against a `Self` driver.
    const SLOT: &'static DriverSlot<Self>;
    /// Attribute groups created on every bound mdev; their callbacks get `&Self::Data`.
    const DEV_GROUPS: Option<&'static sysfs::GroupList<2>> = None;

    /// A new mdev of `mtype` on `parent` (runs under the mdev's device lock).
    fn probe(mdev: &Device, parent: &Self::ParentData, mtype: &Type<Self::TypeData>) -> Result<Pin<KBox<Self::Data>>>;
    /// The mdev goes away; `data` is what probe returned.
    fn remove(mdev: &Device, data: Pin<KBox<Self::Data>>);
    /// `available_instances` of `mtype`.
    fn available(parent: &Self::ParentData, mtype: &Type<Self::TypeData>) -> u32;
    /// `description` of `mtype`.
    fn describe(parent: &Self::ParentData, mtype: &Type<Self::TypeData>, f: &mut Formatter<'_>) -> Result;
}

/// Where the registered `struct mdev_driver` of driver `T` can be found by code that registers
/// parents later (PCI probe), and how many parents point at it.
///
/// Typed: only a [`DriverRegistration<T>`] fills it and only a [`Parent<T>`] reads it, so the
/// callbacks of `T` only ever see `Parent<T>`s. One per driver type, named by [`Driver::SLOT`].
pub struct DriverSlot<T: Driver> {
    /// The registered driver, null while there is none.
    driver: AtomicPtr<sys::mdev_driver>,
    /// Registered parents, each holding `driver` (the C core keeps the pointer).
    parents: AtomicUsize,
    _p: PhantomData<fn() -> T>,
}

impl<T: Driver> DriverSlot<T> {
    /// An empty slot, for a `static`.
    pub const fn new() -> Self {
        Self { driver: AtomicPtr::new(core::ptr::null_mut()), parents: AtomicUsize::new(0), _p: PhantomData }
    }
}

/// A registered `struct mdev_driver`, unregistered on drop.
///
/// Every [`Parent`] using it must be dropped first (the module drops its PCI driver, which
/// owns the parents, before this registration). If one is still registered, dropping waits
/// for it with an error logged rather than free a driver the mdev core still points at.
#[pin_data(PinnedDrop)]
pub struct DriverRegistration<T: Driver> {
    #[pin]
    raw: Opaque<sys::mdev_driver>,
    _p: PhantomData<T>,
}

// SAFETY: registration state is only touched at registration and in drop.
unsafe impl<T: Driver> Send for DriverRegistration<T> {}
// SAFETY: `&Self` exposes nothing mutable.
unsafe impl<T: Driver> Sync for DriverRegistration<T> {}

impl<T: Driver> DriverRegistration<T> {
    /// Registers the driver as `name` and publishes it in [`Driver::SLOT`] (`EBUSY` if a
    /// `T` driver is registered already).
    pub fn new(name: &'static CStr, module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            raw <- Opaque::try_ffi_init(|p: *mut sys::mdev_driver| {
                // SAFETY: `p` is valid for writes and stays pinned until `PinnedDrop`; the
                // callbacks are those of `T`, whose parents are all `Parent<T>`s (typed slot).
                unsafe {
                    p.write(pin_init::zeroed());
                    (*p).device_api = T::DEVICE_API.as_char_ptr();
                    (*p).probe = Some(Self::probe_cb);
                    (*p).remove = Some(Self::remove_cb);
                    (*p).get_available = Some(Self::get_available_cb);
                    (*p).show_description = Some(Self::show_description_cb);
                    (*p).driver.name = name.as_char_ptr();
                    (*p).driver.mod_name = name.as_char_ptr();
                    // VFIO takes a module reference while a device fd is open.
                    (*p).driver.owner = module.as_ptr();
                    // Unbinding an mdev by hand would leave it driverless for good.
                    (*p).driver.suppress_bind_attrs = true;
                    if let Some(g) = T::DEV_GROUPS {
                        (*p).driver.dev_groups = g.as_ptr();
                    }
                    to_result(sys::mdev_register_driver(p))?;
                }
                if T::SLOT.driver.compare_exchange(core::ptr::null_mut(), p, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    // SAFETY: registered just above and not published: no parent uses it.
                    unsafe { sys::mdev_unregister_driver(p) };
                    return Err(EBUSY);
                }
                Ok::<(), Error>(())
            }),
            _p: PhantomData,
        })
    }

    /// `mdev_driver.probe`.
    ///
    /// # Safety
    /// `mdev` must be a live mdev being bound to this driver, so its type belongs to a
    /// registered `Parent<T>` (a `T` driver only has `Parent<T>`s: typed slot). The mdev
    /// core guarantees this: it probes under the device lock, from mdev_device_create(),
    /// which holds the parent's `unreg_sem`.
    unsafe extern "C" fn probe_cb(mdev: *mut sys::mdev_device) -> ffi::c_int {
        // SAFETY: per the function's safety requirements `mdev` is live for the call.
        let dev = unsafe { Device::from_raw(mdev) };
        // SAFETY: per the function's safety requirements the parent is a registered
        // `Parent<T>`; `type_` was set by the core.
        let (parent, mtype) = unsafe { Parent::<T>::from_type((*mdev).type_) };
        from_result(|| {
            let data = T::probe(dev, &parent.data, mtype)?;
            let raw_dev = core::ptr::from_ref(dev.as_bound()).cast_mut().cast::<sys::device>();
            // SAFETY: `raw_dev` is the live mdev's device; the pointer comes back in
            // `remove_cb` exactly once.
            unsafe { sys::dev_set_drvdata(raw_dev, data.into_foreign().cast()) };
            Ok(0)
        })
    }

    /// `mdev_driver.remove`.
    ///
    /// # Safety
    /// `mdev` must be a live mdev that [`Self::probe_cb`] bound successfully and that is
    /// being unbound, its `dev_groups` files already removed (the driver core guarantees
    /// both, once per successful probe).
    unsafe extern "C" fn remove_cb(mdev: *mut sys::mdev_device) {
        // SAFETY: per the function's safety requirements `mdev` is live for the call.
        let dev = unsafe { Device::from_raw(mdev) };
        let raw_dev = core::ptr::from_ref(dev.as_bound()).cast_mut().cast::<sys::device>();
        // SAFETY: `dev_groups` files are gone before remove runs, so nobody borrows the data;
        // the pointer came from `into_foreign()` in `probe_cb`.
        let data = unsafe {
            let p = sys::dev_get_drvdata(raw_dev);
            sys::dev_set_drvdata(raw_dev, core::ptr::null_mut());
            <Pin<KBox<T::Data>> as ForeignOwnable>::from_foreign(p.cast())
        };
        T::remove(dev, data);
    }

    /// `mdev_driver.get_available`.
    ///
    /// # Safety
    /// `mtype` must be a type of a registered `Parent<T>` (the core calls this from the type's
    /// sysfs files, which exist only while the parent is registered).
    unsafe extern "C" fn get_available_cb(mtype: *mut sys::mdev_type) -> ffi::c_uint {
        // SAFETY: per the function's safety requirements.
        let (parent, t) = unsafe { Parent::<T>::from_type(mtype) };
        T::available(&parent.data, t)
    }

    /// `mdev_driver.show_description`.
    ///
    /// # Safety
    /// As [`Self::get_available_cb`]; `buf` must be a sysfs buffer of `PAGE_SIZE` bytes,
    /// writable and exclusive for the call.
    unsafe extern "C" fn show_description_cb(mtype: *mut sys::mdev_type, buf: *mut ffi::c_char) -> isize {
        // SAFETY: per the function's safety requirements.
        let (parent, t, buf) = unsafe {
            let (p, t) = Parent::<T>::from_type(mtype);
            (p, t, core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE))
        };
        let mut f = Formatter::new(buf);
        match T::describe(&parent.data, t, &mut f) {
            Ok(()) => f.bytes_written() as isize,
            Err(e) => e.to_errno() as isize,
        }
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for DriverRegistration<T> {
    fn drop(self: Pin<&mut Self>) {
        // No new parent after this (see `Parent::register` for the pairing).
        T::SLOT.driver.store(core::ptr::null_mut(), Ordering::SeqCst);
        if T::SLOT.parents.load(Ordering::SeqCst) != 0 {
            pr_err!("mdev driver going away with parents registered: waiting for them\n");
            while T::SLOT.parents.load(Ordering::SeqCst) != 0 {
                fsleep(Delta::from_millis(10));
            }
        }
        // SAFETY: registered in `new`; no parent points at it any more.
        unsafe { sys::mdev_unregister_driver(self.raw.get()) };
    }
}

/// Attribute target for mdev `dev_groups`: callbacks get the driver's per-mdev data.
pub struct MdevData<T: Driver>(PhantomData<T>);

impl<T: Driver> sysfs::AttrTarget for MdevData<T> {
    type Data<'a> = &'a T::Data;
    /// # Safety
    /// As [`sysfs::AttrTarget::data`].
    unsafe fn data<'a>(dev: *mut sys::device) -> Option<&'a T::Data> {
        // SAFETY: `dev_groups` files exist only between a successful probe (drvdata set) and
        // remove (files removed first, callbacks drained), so a non-null drvdata is our data.
        let p = unsafe { sys::dev_get_drvdata(dev) };
        // SAFETY: see above; the data outlives the callback.
        (!p.is_null()).then(|| unsafe { &*p.cast::<T::Data>() })
    }
}

/// A registered `struct mdev_parent`: `dev` offers the types; dropping it removes every mdev
/// of this parent (their `remove` runs) and the `mdev_supported_types` tree.
#[repr(C)]
pub struct Parent<T: Driver> {
    raw: Opaque<sys::mdev_parent>,
    /// Set once `mdev_register_parent` succeeded; holds the driver registered until the
    /// parent is unregistered.
    registered: Option<ParentCount<T>>,
    types: KVec<KBox<Type<T::TypeData>>>,
    type_ptrs: KVec<*mut sys::mdev_type>,
    data: T::ParentData,
    dev: ARef<device::Device>,
}

// SAFETY: the raw pointers point into memory `self` owns.
unsafe impl<T: Driver> Send for Parent<T> {}
// SAFETY: `&Parent` only gives out `&T::ParentData` (Sync) and the types.
unsafe impl<T: Driver> Sync for Parent<T> {}

impl<T: Driver> Parent<T> {
    /// Registers `dev` as a parent of the registered `T` driver ([`Driver::SLOT`]; `ENODEV`
    /// if there is none), offering `types`.
    pub fn register(
        dev: &device::Device<device::Bound>,
        types: KVec<TypeDesc<T::TypeData>>,
        data: T::ParentData,
    ) -> Result<Pin<KBox<Self>>> {
        // Counted before the driver is read, while `DriverRegistration::drop` clears the
        // driver before reading the count (all SeqCst): either we see no driver, or its drop
        // sees us and waits.
        let count = ParentCount::<T>::new();
        let driver = T::SLOT.driver.load(Ordering::SeqCst);
        if driver.is_null() {
            return Err(ENODEV);
        }
        let mut boxed = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        let mut ptrs = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        for d in types {
            let mut raw: sys::mdev_type = pin_init::zeroed();
            raw.sysfs_name = d.sysfs_name.as_char_ptr();
            raw.pretty_name = d.pretty_name.as_char_ptr();
            let t = KBox::new(Type { raw: Opaque::new(raw), data: d.data }, GFP_KERNEL)?;
            ptrs.push(t.raw.get(), GFP_KERNEL)?;
            boxed.push(t, GFP_KERNEL)?;
        }
        let plain: &device::Device = dev;
        let mut this = KBox::pin(
            Self { raw: Opaque::uninit(), registered: None, types: boxed, type_ptrs: ptrs, data, dev: plain.into() },
            GFP_KERNEL,
        )?;
        let dev_raw = core::ptr::from_ref(plain).cast_mut().cast::<sys::device>();
        // SAFETY: `this` is pinned and owns the types; `dev` is referenced by `this.dev`; the
        // driver is a registered `T` driver (typed slot) and stays registered while the
        // parent count is held (see `DriverRegistration::drop`).
        to_result(unsafe {
            sys::mdev_register_parent(
                this.raw.get(),
                dev_raw,
                driver,
                this.type_ptrs.as_ptr().cast_mut(),
                this.type_ptrs.len() as u32,
            )
        })?;
        // The registered parent keeps the count until it drops.
        // SAFETY: only a plain field is changed; nothing moves out of the pin.
        unsafe { this.as_mut().get_unchecked_mut().registered = Some(count) };
        Ok(this)
    }

    /// The driver's parent data.
    pub fn data(&self) -> &T::ParentData {
        &self.data
    }

    /// # Safety
    /// `mtype` must belong to a live, registered `Parent<T>`.
    unsafe fn from_type<'a>(mtype: *mut sys::mdev_type) -> (&'a Self, &'a Type<T::TypeData>) {
        // SAFETY: per the safety requirements; `mtype->parent` was set by the core.
        unsafe {
            let p = (*mtype).parent;
            (&*kernel::container_of!(Opaque::cast_from(p), Self, raw), Type::from_raw(mtype))
        }
    }
}

impl<T: Driver> Drop for Parent<T> {
    fn drop(&mut self) {
        if self.registered.is_some() {
            // SAFETY: registered in `register`; removes every child mdev synchronously.
            unsafe { sys::mdev_unregister_parent(self.raw.get()) };
        }
        // `registered` drops after this, releasing the driver.
    }
}

/// One registered (or registering) parent of a `T` driver, counted in [`Driver::SLOT`].
struct ParentCount<T: Driver>(PhantomData<T>);

impl<T: Driver> ParentCount<T> {
    fn new() -> Self {
        T::SLOT.parents.fetch_add(1, Ordering::SeqCst);
        Self(PhantomData)
    }
}

impl<T: Driver> Drop for ParentCount<T> {
    fn drop(&mut self) {
        T::SLOT.parents.fetch_sub(1, Ordering::SeqCst);
    }
}
