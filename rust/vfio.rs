// SPDX-License-Identifier: GPL-2.0
//! Emulated-IOMMU VFIO devices (`struct vfio_device` for mdev drivers).
//!
//! C header: `include/linux/vfio.h`. The C `struct vfio_device` is placed at offset 0 of a
//! `#[repr(C)]` Rust struct that the VFIO core allocates (`_vfio_alloc_device`) and frees
//! after `ops->release`; the driver's per-device data lives right after it. The driver
//! implements [`Ops`] in safe Rust; this file decodes the ioctls and user copies.

// Module-local abstraction: `pub` marks the API an in-tree `kernel::vfio` would export.
#![allow(unreachable_pub, dead_code)]

use crate::bindings as sys;
use core::{
    marker::PhantomData,
    mem::{offset_of, size_of, MaybeUninit},
    ptr::NonNull,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{
    device,
    error::{from_result, to_result, VTABLE_DEFAULT_ERROR},
    ffi,
    mm::virt::VmaNew,
    new_mutex,
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
    sync::aref::{ARef, AlwaysRefCounted},
    sync::Mutex,
    types::Opaque,
    uaccess::{UserPtr, UserSlice},
};

/// vfio-pci convention: the region index sits in bits 40 and up of the file offset.
const REGION_SHIFT: u32 = 40;
const REGION_OFFSET_MASK: u64 = (1 << REGION_SHIFT) - 1;

/// A region of a vfio-pci device (`VFIO_PCI_*_REGION_INDEX`). A device built on this wrapper
/// has exactly these regions; device-specific ones (index 9 and up) are not supported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Region {
    /// BAR 0.
    Bar0 = sys::VFIO_PCI_BAR0_REGION_INDEX,
    /// BAR 1.
    Bar1 = sys::VFIO_PCI_BAR1_REGION_INDEX,
    /// BAR 2.
    Bar2 = sys::VFIO_PCI_BAR2_REGION_INDEX,
    /// BAR 3.
    Bar3 = sys::VFIO_PCI_BAR3_REGION_INDEX,
    /// BAR 4.
    Bar4 = sys::VFIO_PCI_BAR4_REGION_INDEX,
    /// BAR 5.
    Bar5 = sys::VFIO_PCI_BAR5_REGION_INDEX,
    /// The expansion ROM.
    Rom = sys::VFIO_PCI_ROM_REGION_INDEX,
    /// PCI configuration space.
    Config = sys::VFIO_PCI_CONFIG_REGION_INDEX,
    /// Legacy VGA ranges.
    Vga = sys::VFIO_PCI_VGA_REGION_INDEX,
}

impl Region {
    /// Every region, in index order.
    pub const ALL: [Region; sys::VFIO_PCI_NUM_REGIONS as usize] = [
        Region::Bar0,
        Region::Bar1,
        Region::Bar2,
        Region::Bar3,
        Region::Bar4,
        Region::Bar5,
        Region::Rom,
        Region::Config,
        Region::Vga,
    ];

    /// The region with VFIO index `index`, if it is one of [`Region::ALL`].
    pub fn from_index(index: u32) -> Option<Self> {
        Self::ALL.get(index as usize).copied()
    }

    /// The VFIO region index.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// File offset at which the region starts.
    pub const fn offset(self) -> u64 {
        (self as u64) << REGION_SHIFT
    }
}

// `ALL` is indexed by region index.
const _: () = {
    let mut i = 0;
    while i < Region::ALL.len() {
        assert!(Region::ALL[i] as usize == i);
        i += 1;
    }
};

/// An interrupt index of a vfio-pci device (`VFIO_PCI_*_IRQ_INDEX`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum IrqIndex {
    /// Legacy INTx.
    Intx = sys::VFIO_PCI_INTX_IRQ_INDEX,
    /// MSI.
    Msi = sys::VFIO_PCI_MSI_IRQ_INDEX,
    /// MSI-X.
    Msix = sys::VFIO_PCI_MSIX_IRQ_INDEX,
    /// AER error notification.
    Err = sys::VFIO_PCI_ERR_IRQ_INDEX,
    /// Device request (the core wants the device back).
    Req = sys::VFIO_PCI_REQ_IRQ_INDEX,
}

impl IrqIndex {
    /// Every IRQ index, in index order.
    pub const ALL: [IrqIndex; sys::VFIO_PCI_NUM_IRQS as usize] =
        [IrqIndex::Intx, IrqIndex::Msi, IrqIndex::Msix, IrqIndex::Err, IrqIndex::Req];

    /// The IRQ index with VFIO number `index`, if it is one of [`IrqIndex::ALL`].
    pub fn from_index(index: u32) -> Option<Self> {
        Self::ALL.get(index as usize).copied()
    }

    /// The VFIO IRQ index.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

// `ALL` is indexed by IRQ index.
const _: () = {
    let mut i = 0;
    while i < IrqIndex::ALL.len() {
        assert!(IrqIndex::ALL[i] as usize == i);
        i += 1;
    }
};

kernel::impl_flags!(
    /// `VFIO_DEVICE_FLAGS_*` of a device.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
    pub struct DeviceFlags(u32);

    /// One `VFIO_DEVICE_FLAGS_*` bit.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum DeviceFlag {
        /// The device supports `VFIO_DEVICE_RESET`.
        Reset = sys::VFIO_DEVICE_FLAGS_RESET,
        /// A vfio-pci device.
        Pci = sys::VFIO_DEVICE_FLAGS_PCI,
    }
);

kernel::impl_flags!(
    /// `VFIO_REGION_INFO_FLAG_*` of a region.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
    pub struct RegionFlags(u32);

    /// One `VFIO_REGION_INFO_FLAG_*` bit.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum RegionFlag {
        /// The region can be read.
        Read = sys::VFIO_REGION_INFO_FLAG_READ,
        /// The region can be written.
        Write = sys::VFIO_REGION_INFO_FLAG_WRITE,
        /// The region can be mmapped (needs [`Ops::mmap`]).
        Mmap = sys::VFIO_REGION_INFO_FLAG_MMAP,
    }
);

kernel::impl_flags!(
    /// `VFIO_IRQ_INFO_*` of an IRQ index.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
    pub struct IrqFlags(u32);

    /// One `VFIO_IRQ_INFO_*` bit.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum IrqFlag {
        /// Signalled through an eventfd.
        Eventfd = sys::VFIO_IRQ_INFO_EVENTFD,
        /// Can be masked and unmasked.
        Maskable = sys::VFIO_IRQ_INFO_MASKABLE,
        /// Masked by the device when it fires (INTx).
        Automasked = sys::VFIO_IRQ_INFO_AUTOMASKED,
        /// The vector count cannot be changed.
        Noresize = sys::VFIO_IRQ_INFO_NORESIZE,
    }
);

/// Mask of the page-aligned part of an address.
const PAGE_MASK: u64 = !(kernel::page::PAGE_SIZE as u64 - 1);

/// Upper bound on SET_IRQS payloads: no index of ours has more vectors than this.
const MAX_IRQ_VECTORS: usize = 64;

/// Largest run handed to [`Ops::read_run`] / [`Ops::write_run`] (one bounce buffer).
pub const RUN_BYTES: usize = 256;

/// Largest naturally aligned access (8, 4, 2, 1) that fits at `pos` in `remaining`. Written
/// without division or iterator adaptors: they carry panic paths (zero divisor, chunk size)
/// that objtool reports as falling through.
pub fn access_width(pos: u64, remaining: usize) -> usize {
    if remaining >= 8 && pos & 7 == 0 {
        8
    } else if remaining >= 4 && pos & 3 == 0 {
        4
    } else if remaining >= 2 && pos & 1 == 0 {
        2
    } else {
        1
    }
}

/// Splits `len` bytes from `offset` into naturally aligned accesses `one(offset, index in
/// the run, width)`; stops at the first error. Returns the bytes done and that error.
pub fn split_run(offset: u64, len: usize, mut one: impl FnMut(u64, usize, usize) -> Result) -> (usize, Result) {
    let mut done = 0;
    while done < len {
        let w = access_width(offset + done as u64, len - done);
        if let Err(e) = one(offset + done as u64, done, w) {
            return (done, Err(e));
        }
        done += w;
    }
    (done, Ok(()))
}

/// Answer to `VFIO_DEVICE_GET_INFO`; the region and IRQ counts are those of [`Region`] and
/// [`IrqIndex`].
pub struct DeviceInfo {
    /// What the device supports.
    pub flags: DeviceFlags,
}

/// Answer to `VFIO_DEVICE_GET_REGION_INFO` (the offset is filled in here).
pub struct RegionInfo {
    /// Size in bytes (0: region absent).
    pub size: u64,
    /// What the region supports.
    pub flags: RegionFlags,
    /// One sparse-mmap area `(offset, size)` inside the region (with [`RegionFlag::Mmap`]):
    /// the part a user may mmap; the rest is reached by read/write only.
    pub sparse: Option<(u64, u64)>,
}

/// The page a fault of a mapped region asks for ([`Ops::fault`]): the driver inserts the
/// page frame to map there, or returns an error and the access fails (SIGBUS).
pub struct Fault<'a> {
    vmf: *mut sys::vm_fault,
    _p: PhantomData<&'a mut sys::vm_fault>,
}

impl Fault<'_> {
    /// Whether the faulting access is a write.
    pub fn write(&self) -> bool {
        // SAFETY: `vmf` is the live fault being handled (see `VTable::fault`).
        unsafe { sys::gpuvm_helper_vmf_write(self.vmf) }
    }

    /// Maps the page frame `pfn` (of device memory: I/O, uncached) at the faulting address.
    pub fn insert_pfn(&self, pfn: u64) -> Result {
        // SAFETY: `vmf` is the live fault being handled, in a VM_PFNMAP VMA set up by
        // `Device::map_for_faults`.
        let r = unsafe { sys::gpuvm_helper_vmf_insert_pfn(self.vmf, pfn as ffi::c_ulong) };
        if r == sys::vm_fault_reason_VM_FAULT_NOPAGE {
            Ok(())
        } else if r == sys::vm_fault_reason_VM_FAULT_OOM {
            Err(ENOMEM)
        } else {
            Err(EFAULT)
        }
    }
}

/// Answer to `VFIO_DEVICE_GET_IRQ_INFO`.
pub struct IrqInfo {
    /// What the index supports.
    pub flags: IrqFlags,
    /// Number of vectors at this index (0: not supported).
    pub count: u32,
}

/// What `VFIO_DEVICE_SET_IRQS` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IrqAction {
    /// Mask the vectors.
    Mask,
    /// Unmask the vectors.
    Unmask,
    /// Trigger, or with eventfd data: set up signalling.
    Trigger,
}

/// The data carried by `VFIO_DEVICE_SET_IRQS`, already copied from userspace and
/// validated against the index's vector count.
pub enum IrqData<'a> {
    /// No data: act on `count` vectors from `start` (count 0 with Trigger: tear down).
    None,
    /// One flag per vector.
    Bool(&'a [u8]),
    /// One eventfd per vector; -1 tears that vector's signalling down.
    Eventfd(&'a [i32]),
}

/// A decoded `VFIO_DEVICE_SET_IRQS`.
pub struct IrqSet<'a> {
    /// IRQ index.
    pub index: IrqIndex,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
    /// What to do.
    pub action: IrqAction,
    /// With what.
    pub data: IrqData<'a>,
}

/// The callbacks of an emulated VFIO device, shaped like the kernel's `MiscDevice`: `Self` is
/// the driver's per-device state, pinned inside the VFIO allocation and shared between
/// threads. Callbacks with a `build_error!` default are optional: the C pointer is set only
/// when the implementation (`#[vtable] impl Ops for ...`) provides them (`Self::HAS_*`).
#[vtable]
pub trait Ops: Sized + Send + Sync + 'static {
    /// `vfio_device_ops.name`.
    const NAME: &'static CStr;

    /// First open (open count 0 -> 1), under the device set lock. Always installed (this
    /// wrapper tracks the open session for [`PinnedPage`]s); the default does nothing.
    fn open_device(_dev: &Device<Self>) -> Result {
        Ok(())
    }
    /// Last close, under the device set lock. Every [`PinnedPage`] should be dropped by now;
    /// what is left is unpinned after this returns, with a warning. Always installed.
    fn close_device(_dev: &Device<Self>) {}
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_info(dev: &Device<Self>) -> DeviceInfo;
    /// `VFIO_DEVICE_GET_REGION_INFO` for `region`.
    fn region_info(dev: &Device<Self>, region: Region) -> Result<RegionInfo>;
    /// `VFIO_DEVICE_GET_IRQ_INFO` for `index`.
    fn irq_info(dev: &Device<Self>, index: IrqIndex) -> Result<IrqInfo>;
    /// `VFIO_DEVICE_SET_IRQS`, validated against `irq_info`.
    fn set_irqs(dev: &Device<Self>, set: &IrqSet<'_>) -> Result;
    /// `VFIO_DEVICE_RESET`.
    fn reset(dev: &Device<Self>) -> Result;
    /// One read of `buf.len()` (1, 2, 4 or 8) bytes at `offset`, aligned to its size.
    fn read(dev: &Device<Self>, region: Region, offset: u64, buf: &mut [u8]) -> Result;
    /// One write of `data.len()` (1, 2, 4 or 8) bytes at `offset`, aligned to its size.
    fn write(dev: &Device<Self>, region: Region, offset: u64, data: &[u8]) -> Result;
    /// A run of reads filling `buf` from `offset` (at most [`RUN_BYTES`]): the bytes done
    /// and the error that stopped it. The default splits it into naturally aligned
    /// [`Ops::read`]s; a driver overrides it to do per-run work once (e.g. take a lock).
    fn read_run(dev: &Device<Self>, region: Region, offset: u64, buf: &mut [u8]) -> (usize, Result) {
        split_run(offset, buf.len(), |off, at, w| match buf.get_mut(at..at + w) {
            Some(b) => Self::read(dev, region, off, b),
            None => Err(EINVAL),
        })
    }
    /// A run of writes of `data` from `offset` (at most [`RUN_BYTES`]); as [`Ops::read_run`].
    fn write_run(dev: &Device<Self>, region: Region, offset: u64, data: &[u8]) -> (usize, Result) {
        split_run(offset, data.len(), |off, at, w| match data.get(at..at + w) {
            Some(d) => Self::write(dev, region, off, d),
            None => Err(EINVAL),
        })
    }
    /// `mmap()` of `region` from `offset` into `vma`, which is being set up. A region that
    /// can be mapped says so with [`RegionFlag::Mmap`]. Without this callback the core
    /// refuses every mmap with `EINVAL`.
    fn mmap(_dev: &Device<Self>, _region: Region, _offset: u64, _vma: &VmaNew) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// A user access faulted on a page of `region` at `offset` (page aligned) of a VMA set
    /// up by [`Device::map_for_faults`]: insert a page frame through `fault`, or return an
    /// error (the access gets SIGBUS). Runs with the faulting process's `mmap_lock` held (for
    /// reading): it must not take a lock that is held elsewhere while user memory is pinned
    /// or copied. Pages stay mapped until [`Device::zap`].
    fn fault(_dev: &Device<Self>, _region: Region, _offset: u64, _fault: &Fault<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// The core wants the device back (it is being removed while userspace holds it); called
    /// every 10 s with an increasing `count` until the last fd is closed.
    fn request(_dev: &Device<Self>, _count: u32) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
    /// Userspace unmapped `[iova, iova + length)`: every [`PinnedPage`] in it should be
    /// dropped before this returns; what is left is unpinned after it, with a warning (the
    /// page must not stay pinned past the unmap). A device without it cannot pin pages.
    fn dma_unmap(_dev: &Device<Self>, _iova: u64, _length: u64) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// A VFIO device whose memory the VFIO core owns (refcounted through `vdev->device`).
///
/// # Invariants
/// - `vdev` is at offset 0 and was initialised by `_vfio_alloc_device` with the ops of
///   [`VTable<T>`].
/// - `pins` is initialised from right after allocation until `ops->release` drops it.
/// - `data` is initialised iff `initialized` is true; it is dropped in `ops->release`.
#[repr(C)]
pub struct Device<T: Ops> {
    vdev: Opaque<sys::vfio_device>,
    initialized: AtomicBool,
    pins: Mutex<PinTable>,
    data: MaybeUninit<T>,
}

/// Every page pinned through [`Device::pin_page`] and not unpinned yet.
///
/// # Invariants
/// An entry `(page, id)` in `pinned` stands for exactly one `vfio_pin_pages()` of `page`
/// done while the device was open (`open`), in the current open session, and not undone.
struct PinTable {
    open: bool,
    next_id: u64,
    pinned: RBTree<(u64, u64), ()>,
}

// SAFETY: the VFIO core may call any callback and drop the last reference from any thread;
// `T` is `Send + Sync`.
unsafe impl<T: Ops> Send for Device<T> {}
// SAFETY: as above.
unsafe impl<T: Ops> Sync for Device<T> {}

impl<T: Ops> Device<T> {
    /// Allocates a VFIO device with `T` inside, child of `parent` (the mdev).
    pub fn new(parent: &device::Device<device::Bound>, init: impl PinInit<T, Error>) -> Result<ARef<Self>> {
        const { assert!(offset_of!(Self, vdev) == 0) };
        // The allocation is a kvzalloc(): only 8-byte alignment is guaranteed.
        const { assert!(core::mem::align_of::<Self>() <= 8) };
        let parent_raw = core::ptr::from_ref(parent).cast_mut().cast::<sys::device>();
        let mut err: ffi::c_int = 0;
        // SAFETY: the ops table is 'static; `parent_raw` is a live, bound device; the size
        // covers `struct vfio_device` at offset 0 plus our fields.
        let raw = unsafe { sys::gpuvm_helper_vfio_alloc(size_of::<Self>(), parent_raw, VTable::<T>::build(), &mut err) };
        let this = NonNull::new(raw.cast::<Self>()).ok_or_else(|| Error::from_errno(err))?;
        let pins = new_mutex!(PinTable { open: false, next_id: 0, pinned: RBTree::new() });
        // SAFETY: the allocation is ours alone and large enough, `pins` is uninitialised and
        // never moves (the core frees it only after `release`).
        unsafe { pin_init::raw_init(&raw mut (*this.as_ptr()).pins, pins) };
        // SAFETY: the allocation is ours alone and large enough; `data` never moves.
        let data = unsafe { (&raw mut (*this.as_ptr()).data).cast::<T>() };
        // SAFETY: `data` is valid, uninitialised, and stays pinned until `release`.
        match unsafe { pin_init::raw_try_init(data, init) } {
            Ok(()) => {
                // SAFETY: `this` is valid.
                unsafe { (*this.as_ptr()).initialized.store(true, Ordering::Release) };
                // SAFETY: `_vfio_alloc_device` returned one reference, now owned by the ARef.
                Ok(unsafe { ARef::from_raw(this) })
            }
            Err(e) => {
                // SAFETY: drops the only reference; `release` sees `initialized == false`.
                unsafe { sys::gpuvm_helper_vfio_put_device(this.as_ptr().cast()) };
                Err(e)
            }
        }
    }

    fn as_raw(&self) -> *mut sys::vfio_device {
        self.vdev.get()
    }

    /// Sets up `vma` (in [`Ops::mmap`]) so that its pages are filled by [`Ops::fault`]: an
    /// I/O, PFN-mapped, uncached mapping that neither grows nor is dumped.
    pub fn map_for_faults(&self, vma: &VmaNew) {
        const { assert!(T::HAS_FAULT, "a VFIO device that maps for faults must implement Ops::fault") };
        // SAFETY: `vma` is being set up by mmap() of this device's file; the ops table is
        // 'static; the private pointer is this device, which stays alive as long as the VMA
        // (the VMA holds the device file open, and the device outlives its open files).
        unsafe { sys::gpuvm_helper_vma_set_pfnmap(vma.as_ptr(), &VTable::<T>::VM_OPS, self.as_raw().cast()) };
    }

    /// Removes every user mapping of `[offset, offset + len)` of `region` (later accesses
    /// fault again). Takes the file's `i_mmap` lock and page-table locks: callable under
    /// driver locks that are never taken inside [`Ops::fault`]'s own critical section
    /// after those (see the driver's lock order).
    pub fn zap(&self, region: Region, offset: u64, len: u64) {
        // SAFETY: the device is alive; the VFIO core gave it an inode whose mapping every
        // device file uses (`f_mapping`), as vfio-pci relies on for its own zap.
        unsafe { sys::gpuvm_helper_vfio_zap(self.as_raw(), region.offset() + offset, len) };
    }

    /// The parent `struct device` (the mdev).
    pub fn parent(&self) -> &device::Device {
        // SAFETY: `vdev->dev` is set at allocation and referenced by the vfio device.
        unsafe { device::Device::from_raw((*self.as_raw()).dev) }
    }

    /// Reads guest memory at `iova` through the device's IOMMU context. Sleeps.
    pub fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        to_result(unsafe { sys::vfio_dma_rw(self.as_raw(), iova, buf.as_mut_ptr().cast(), buf.len(), false) })
    }

    /// Writes guest memory at `iova`. Sleeps.
    pub fn dma_write(&self, iova: u64, data: &[u8]) -> Result {
        // SAFETY: with `write == true` the buffer is only read.
        to_result(unsafe {
            sys::vfio_dma_rw(self.as_raw(), iova, data.as_ptr().cast_mut().cast(), data.len(), true)
        })
    }

    /// Pins the page holding `iova` in the user's IOVA space (writable for the device if
    /// `write`); the guard gives its physical address (what a bus-mastering device is given)
    /// and unpins it when dropped. Only while the device is open (`EINVAL` otherwise), and
    /// only for drivers with [`Ops::dma_unmap`] (a build error otherwise). Sleeps.
    pub fn pin_page(&self, iova: u64, write: bool) -> Result<PinnedPage<T>> {
        const { assert!(T::HAS_DMA_UNMAP, "a VFIO device that pins pages must implement Ops::dma_unmap") };
        let page = iova & PAGE_MASK;
        // Allocated first, so a pin never has to be undone for want of memory.
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        let mut table = self.pins.lock();
        if !table.open {
            return Err(EINVAL);
        }
        let mut phys = 0u64;
        // SAFETY: the device is open (checked under the lock that `close_device` takes);
        // the helper pins one page and checks the result count.
        to_result(unsafe { sys::gpuvm_helper_pin_page(self.as_raw(), page, write, &mut phys) })?;
        let id = table.next_id;
        table.next_id += 1;
        // INVARIANT: one entry for the pin just done, in this open session.
        table.pinned.insert(node.into_node((page, id), ()));
        Ok(PinnedPage { dev: self.into(), page, id, phys })
    }

    /// Unpins what is left of the pins in `[iova, iova + len)` (the driver should have
    /// dropped their guards already); returns how many there were.
    fn reclaim_pins(&self, table: &mut PinTable, iova: u64, len: u64) -> usize {
        let end = iova.saturating_add(len);
        let mut n = 0;
        while let Some(key) = table.pinned.cursor_lower_bound(&(iova & PAGE_MASK, 0)).map(|c| *c.current().0) {
            if key.0 >= end {
                break;
            }
            table.pinned.remove(&key);
            // SAFETY: the entry stood for one pin of `key.0` in this open session not undone
            // yet (type invariant); removing it makes this the only unpin of it.
            unsafe { sys::vfio_unpin_pages(self.as_raw(), key.0, 1) };
            n += 1;
        }
        n
    }

    /// # Safety
    /// `ptr` must be the `vfio_device` of a live `Device<T>` whose `data` is initialised,
    /// and stay so for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut sys::vfio_device) -> &'a Self {
        // SAFETY: `vdev` is at offset 0 of `Device<T>` (type invariant); the caller
        // guarantees liveness for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// The VFIO ioctl pattern: copy in the first `minsz` bytes of a uapi struct, check its
    /// `argsz`, let `f` fill it, copy the same bytes back.
    ///
    /// # Safety
    /// Every bit pattern must be a valid `S` (a uapi struct of integer fields).
    unsafe fn ioctl_inout<S: pin_init::Zeroable>(
        arg: UserPtr,
        minsz: usize,
        argsz: impl Fn(&S) -> u32,
        f: impl FnOnce(&mut S) -> Result,
    ) -> Result<isize> {
        let mut s: S = pin_init::zeroed();
        if minsz > size_of::<S>() {
            return Err(EINVAL);
        }
        let (mut reader, mut writer) = UserSlice::new(arg, minsz).reader_writer();
        // SAFETY: any bytes are a valid `S` (the function's safety requirements), and `s` is
        // at least `minsz` bytes long (checked above).
        let bytes = unsafe { core::slice::from_raw_parts_mut((&raw mut s).cast::<u8>(), minsz) };
        reader.read_slice(bytes)?;
        if (argsz(&s) as usize) < minsz {
            return Err(EINVAL);
        }
        f(&mut s)?;
        // SAFETY: as above; `s` is initialised.
        let bytes = unsafe { core::slice::from_raw_parts((&raw const s).cast::<u8>(), minsz) };
        writer.write_slice(bytes)?;
        Ok(0)
    }

    fn set_irqs_ioctl(&self, arg: UserPtr) -> Result<isize> {
        // The fixed part of `struct vfio_irq_set`: argsz, flags, index, start, count.
        let minsz = offset_of!(sys::vfio_irq_set, count) + size_of::<u32>();
        let mut fixed = [0u8; 20];
        const { assert!(offset_of!(sys::vfio_irq_set, count) + size_of::<u32>() == 20) };
        UserSlice::new(arg, minsz).reader().read_slice(&mut fixed)?;
        let field = |i: usize| u32::from_ne_bytes([fixed[4 * i], fixed[4 * i + 1], fixed[4 * i + 2], fixed[4 * i + 3]]);
        let mut hdr = sys::vfio_irq_set {
            argsz: field(0),
            flags: field(1),
            index: field(2),
            start: field(3),
            count: field(4),
            data: sys::__IncompleteArrayField::new(),
        };
        let index = IrqIndex::from_index(hdr.index).ok_or(EINVAL)?;
        let vectors = T::irq_info(self, index)?.count.min(MAX_IRQ_VECTORS as u32);
        let mut data_size: usize = 0;
        // SAFETY: `hdr` is a valid, initialised header; `data_size` is a valid out pointer.
        to_result(unsafe {
            sys::vfio_set_irqs_validate_and_prepare(&mut hdr, vectors as i32, IrqIndex::ALL.len() as i32, &mut data_size)
        })?;
        let action = match hdr.flags & sys::VFIO_IRQ_SET_ACTION_TYPE_MASK {
            sys::VFIO_IRQ_SET_ACTION_MASK => IrqAction::Mask,
            sys::VFIO_IRQ_SET_ACTION_UNMASK => IrqAction::Unmask,
            sys::VFIO_IRQ_SET_ACTION_TRIGGER => IrqAction::Trigger,
            _ => return Err(EINVAL),
        };
        // After validation `data_size` <= MAX_IRQ_VECTORS * 4.
        let mut raw = [0u8; 4 * MAX_IRQ_VECTORS];
        let payload = raw.get_mut(..data_size).ok_or(EINVAL)?;
        UserSlice::new(arg.wrapping_byte_add(minsz), data_size).reader().read_slice(payload)?;
        let mut fds = [0i32; MAX_IRQ_VECTORS];
        let data = match hdr.flags & sys::VFIO_IRQ_SET_DATA_TYPE_MASK {
            sys::VFIO_IRQ_SET_DATA_NONE => IrqData::None,
            sys::VFIO_IRQ_SET_DATA_BOOL => IrqData::Bool(payload),
            sys::VFIO_IRQ_SET_DATA_EVENTFD => {
                let n = (data_size / 4).min(MAX_IRQ_VECTORS);
                let mut i = 0;
                while i < n {
                    let b = &raw[4 * i..4 * i + 4];
                    fds[i] = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                    i += 1;
                }
                IrqData::Eventfd(&fds[..n])
            }
            _ => return Err(EINVAL),
        };
        let set = IrqSet { index, start: hdr.start, count: hdr.count, action, data };
        T::set_irqs(self, &set).map(|()| 0)
    }

    /// Decodes one device ioctl (`VFIO_DEVICE_GET_REGION_INFO` goes to
    /// [`VTable::get_region_info_caps`] instead).
    fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<isize> {
        match cmd {
            sys::VFIO_DEVICE_GET_INFO => {
                let minsz = offset_of!(sys::vfio_device_info, num_irqs) + size_of::<u32>();
                let fill = |s: &mut sys::vfio_device_info| {
                    s.flags = T::device_info(self).flags.into();
                    s.num_regions = Region::ALL.len() as u32;
                    s.num_irqs = IrqIndex::ALL.len() as u32;
                    Ok(())
                };
                // SAFETY: `vfio_device_info` has only integer fields.
                unsafe { Self::ioctl_inout(arg, minsz, |s: &sys::vfio_device_info| s.argsz, fill) }
            }
            sys::VFIO_DEVICE_GET_IRQ_INFO => {
                let minsz = offset_of!(sys::vfio_irq_info, count) + size_of::<u32>();
                let fill = |s: &mut sys::vfio_irq_info| {
                    let ii = T::irq_info(self, IrqIndex::from_index(s.index).ok_or(EINVAL)?)?;
                    s.flags = ii.flags.into();
                    s.count = ii.count;
                    Ok(())
                };
                // SAFETY: `vfio_irq_info` has only integer fields.
                unsafe { Self::ioctl_inout(arg, minsz, |s: &sys::vfio_irq_info| s.argsz, fill) }
            }
            sys::VFIO_DEVICE_SET_IRQS => self.set_irqs_ioctl(arg),
            sys::VFIO_DEVICE_RESET => T::reset(self).map(|()| 0),
            _ => Err(ENOTTY),
        }
    }
}

/// Splits a file position (of read/write, or mmap's page offset in bytes) into region and
/// offset; `None` for a position outside every [`Region`].
fn decode_pos(pos: u64) -> Option<(Region, u64)> {
    let region = Region::from_index(u32::try_from(pos >> REGION_SHIFT).ok()?)?;
    Some((region, pos & REGION_OFFSET_MASK))
}

/// Runs a read()/write() at `*ppos` as runs of at most [`RUN_BYTES`] handed to `run(region,
/// offset, length)`; stops at the first error (returned if
/// nothing was transferred, otherwise a short count, like vfio-pci) and advances `*ppos` by
/// what was done.
///
/// # Safety
/// `ppos` must be valid for reads and writes for the duration of the call.
unsafe fn transfer(ppos: *mut sys::loff_t, count: usize, mut run: impl FnMut(Region, u64, usize) -> (usize, Result)) -> isize {
    // SAFETY: per the function's safety requirements.
    let pos = unsafe { *ppos };
    let Some((region, off)) = u64::try_from(pos).ok().and_then(decode_pos) else {
        return EINVAL.to_errno() as isize;
    };
    let mut done = 0usize;
    while done < count {
        let len = (count - done).min(RUN_BYTES);
        let (n, r) = run(region, off + done as u64, len);
        done += n;
        if let Err(e) = r {
            if done == 0 {
                return e.to_errno() as isize;
            }
            break;
        }
    }
    // SAFETY: per the function's safety requirements.
    unsafe { *ppos += done as sys::loff_t };
    done as isize
}

/// The `vfio_device_ops` of a `Device<T>`: `extern "C"` trampolines into [`Ops`] and the
/// table of them (like the kernel's `MiscdeviceVTable`).
///
/// Every trampoline that takes `vdev` has the contract of [`VTable::device`].
struct VTable<T: Ops>(PhantomData<T>);

impl<T: Ops> VTable<T> {
    /// The device behind `vdev`; its contract is the one every trampoline relies on.
    ///
    /// # Safety
    /// `vdev` must be the `vfio_device` of a [`Device<T>`] allocated by [`Device::new`] (so
    /// its ops are this table) whose `data` is initialised, and it must stay alive for the
    /// call. The VFIO core guarantees both: it calls ops only on a registered device (one
    /// handed to [`Registration::new`] after `Device::new` succeeded), holding a reference
    /// for the duration of the call.
    unsafe fn device<'a>(vdev: *mut sys::vfio_device) -> &'a Device<T> {
        // SAFETY: per the function's safety requirements.
        unsafe { Device::from_raw(vdev) }
    }

    /// # Safety
    /// `vdev` must be the `vfio_device` of a [`Device<T>`] whose last reference was just
    /// dropped (the core calls this from the final `put_device`, then frees the memory); no
    /// other code can reach it any more.
    unsafe extern "C" fn release(vdev: *mut sys::vfio_device) {
        let this = vdev.cast::<Device<T>>();
        // SAFETY: per the function's safety requirements we are the only user of `*this`;
        // `data` is initialised iff `initialized` says so, `pins` always (type invariants).
        unsafe {
            if (*this).initialized.load(Ordering::Acquire) {
                core::ptr::drop_in_place((&raw mut (*this).data).cast::<T>());
            }
            core::ptr::drop_in_place(&raw mut (*this).pins);
        }
        // The core kvfree()s the memory after this returns.
    }

    /// # Safety
    /// As [`VTable::device`]; called under the device set lock.
    unsafe extern "C" fn open_device(vdev: *mut sys::vfio_device) -> ffi::c_int {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        dev.pins.lock().open = true;
        let r = T::open_device(dev);
        if r.is_err() {
            // The core does not call `close_device` after a failed open.
            Self::end_pin_session(dev, "failed open");
        }
        from_result(|| r.map(|()| 0))
    }

    /// Ends the open session: unpins what the driver left pinned, then refuses new pins.
    fn end_pin_session(dev: &Device<T>, when: &str) {
        let mut table = dev.pins.lock();
        let left = dev.reclaim_pins(&mut table, 0, u64::MAX);
        table.open = false;
        drop(table);
        if left != 0 {
            dev_warn!(dev.parent(), "{} pinned pages still held at {}: unpinned\n", left, when);
        }
    }

    /// # Safety
    /// As [`VTable::device`]; called under the device set lock.
    unsafe extern "C" fn close_device(vdev: *mut sys::vfio_device) {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        T::close_device(dev);
        Self::end_pin_session(dev, "close");
    }

    /// # Safety
    /// As [`VTable::device`].
    unsafe extern "C" fn request(vdev: *mut sys::vfio_device, count: ffi::c_uint) {
        // SAFETY: per the function's safety requirements.
        T::request(unsafe { Self::device(vdev) }, count)
    }

    /// # Safety
    /// As [`VTable::device`].
    unsafe extern "C" fn dma_unmap(vdev: *mut sys::vfio_device, iova: u64, length: u64) {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        T::dma_unmap(dev, iova, length);
        let left = dev.reclaim_pins(&mut dev.pins.lock(), iova, length);
        if left != 0 {
            dev_warn!(dev.parent(), "{} pinned pages left in unmapped IOVA {:#x}+{:#x}: unpinned\n", left, iova, length);
        }
    }

    /// # Safety
    /// As [`VTable::device`]; `buf` is a user pointer (only accessed through
    /// `UserSlice`); `ppos` must be valid for reads and writes for the call.
    unsafe extern "C" fn read(
        vdev: *mut sys::vfio_device,
        buf: *mut ffi::c_char,
        count: usize,
        ppos: *mut sys::loff_t,
    ) -> isize {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        let mut writer = UserSlice::new(UserPtr::from_ptr(buf.cast()), count).writer();
        // SAFETY: `ppos` is valid for the call (the function's safety requirements).
        unsafe {
            transfer(ppos, count, |region, off, len| {
                let mut tmp = [0u8; RUN_BYTES];
                let (n, r) = T::read_run(dev, region, off, &mut tmp[..len]);
                match writer.write_slice(&tmp[..n]) {
                    Ok(()) => (n, r),
                    Err(e) => (0, Err(e)),
                }
            })
        }
    }

    /// # Safety
    /// As [`VTable::read`].
    unsafe extern "C" fn write(
        vdev: *mut sys::vfio_device,
        buf: *const ffi::c_char,
        count: usize,
        ppos: *mut sys::loff_t,
    ) -> isize {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        let mut reader = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
        // SAFETY: `ppos` is valid for the call (the function's safety requirements).
        unsafe {
            transfer(ppos, count, |region, off, len| {
                let mut tmp = [0u8; RUN_BYTES];
                if let Err(e) = reader.read_slice(&mut tmp[..len]) {
                    return (0, Err(e));
                }
                T::write_run(dev, region, off, &tmp[..len])
            })
        }
    }

    /// # Safety
    /// As [`VTable::device`]; `info` must point to the core's kernel copy of the user's
    /// `struct vfio_region_info` (argsz already checked), valid and exclusive for the call.
    unsafe extern "C" fn get_region_info_caps(
        vdev: *mut sys::vfio_device,
        info: *mut sys::vfio_region_info,
        _caps: *mut sys::vfio_info_cap,
    ) -> ffi::c_int {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        // SAFETY: per the function's safety requirements.
        let info = unsafe { &mut *info };
        let Some(region) = Region::from_index(info.index) else {
            return EINVAL.to_errno();
        };
        match T::region_info(dev, region) {
            Ok(ri) => {
                info.size = ri.size;
                info.offset = region.offset();
                info.flags = ri.flags.into();
                if let Some((off, size)) = ri.sparse {
                    // SAFETY: `caps` is the core's capability chain for this call (the
                    // function's safety requirements); the helper copies the capability.
                    let r = unsafe { sys::gpuvm_helper_region_add_sparse(_caps, off, size) };
                    if r != 0 {
                        return r;
                    }
                }
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    /// As [`VTable::device`]; `arg` is a user address (only accessed through
    /// `UserSlice`).
    unsafe extern "C" fn ioctl(vdev: *mut sys::vfio_device, cmd: ffi::c_uint, arg: ffi::c_ulong) -> ffi::c_long {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        match dev.ioctl(cmd, UserPtr::from_addr(arg as usize)) {
            Ok(v) => v as ffi::c_long,
            Err(e) => e.to_errno() as ffi::c_long,
        }
    }

    /// # Safety
    /// As [`VTable::device`]; `vma` must be a VMA undergoing initial setup in the
    /// `mmap()` of the device file, for the duration of the call.
    unsafe extern "C" fn mmap(vdev: *mut sys::vfio_device, vma: *mut sys::vm_area_struct) -> ffi::c_int {
        // SAFETY: per the function's safety requirements.
        let dev = unsafe { Self::device(vdev) };
        // SAFETY: `vma` is being set up by this mmap() call (the function's requirements).
        let vma = unsafe { VmaNew::from_raw(vma) };
        // SAFETY: `vm_pgoff` is a plain field of the live VMA, fixed while it is set up.
        let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff } as u64;
        let pos = pgoff.checked_mul(kernel::page::PAGE_SIZE as u64);
        let Some((region, offset)) = pos.and_then(decode_pos) else {
            return EINVAL.to_errno();
        };
        match T::mmap(dev, region, offset, vma) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    /// `vmf` must be a fault being handled in a VMA set up by [`Device::map_for_faults`] on a
    /// `Device<T>` (its private data), valid for the call; the VMA keeps the device alive.
    unsafe extern "C" fn fault(vmf: *mut sys::vm_fault) -> sys::vm_fault_t {
        // SAFETY: per the function's safety requirements.
        let (vdev, pgoff) = unsafe { (sys::gpuvm_helper_vmf_private(vmf), sys::gpuvm_helper_vmf_pgoff(vmf)) };
        // SAFETY: the private data is the `vfio_device` of a live, registered `Device<T>`
        // (set by `map_for_faults`; the VMA holds its file open).
        let dev = unsafe { Self::device(vdev.cast()) };
        let pos = pgoff.checked_mul(kernel::page::PAGE_SIZE as u64);
        let Some((region, offset)) = pos.and_then(decode_pos) else {
            return sys::vm_fault_reason_VM_FAULT_SIGBUS;
        };
        let f = Fault { vmf, _p: PhantomData };
        match T::fault(dev, region, offset, &f) {
            Ok(()) => sys::vm_fault_reason_VM_FAULT_NOPAGE,
            Err(e) if e == ENOMEM => sys::vm_fault_reason_VM_FAULT_OOM,
            Err(_) => sys::vm_fault_reason_VM_FAULT_SIGBUS,
        }
    }

    /// The `vm_operations_struct` of VMAs set up by [`Device::map_for_faults`].
    const VM_OPS: sys::vm_operations_struct = sys::vm_operations_struct {
        fault: Some(Self::fault),
        // SAFETY: all-zeroes is a valid `vm_operations_struct` (no callbacks).
        ..unsafe { core::mem::zeroed() }
    };

    const VTABLE: sys::vfio_device_ops = sys::vfio_device_ops {
        name: kernel::str::as_char_ptr_in_const_context(T::NAME).cast_mut(),
        init: None,
        release: Some(Self::release),
        // Registration WARNs unless all four iommufd ops are present.
        bind_iommufd: Some(sys::vfio_iommufd_emulated_bind),
        unbind_iommufd: Some(sys::vfio_iommufd_emulated_unbind),
        attach_ioas: Some(sys::vfio_iommufd_emulated_attach_ioas),
        detach_ioas: Some(sys::vfio_iommufd_emulated_detach_ioas),
        pasid_attach_ioas: None,
        pasid_detach_ioas: None,
        // Always installed: they delimit the session in which pages may be pinned.
        open_device: Some(Self::open_device),
        close_device: Some(Self::close_device),
        read: Some(Self::read),
        write: Some(Self::write),
        ioctl: Some(Self::ioctl),
        // In 7.3 VFIO_DEVICE_GET_REGION_INFO never reaches `ioctl`: the core calls this.
        get_region_info_caps: Some(Self::get_region_info_caps),
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        request: if T::HAS_REQUEST { Some(Self::request) } else { None },
        match_: None,
        match_token_uuid: None,
        // Without it the core refuses to pin pages for the device.
        dma_unmap: if T::HAS_DMA_UNMAP { Some(Self::dma_unmap) } else { None },
        device_feature: None,
    };

    const fn build() -> &'static sys::vfio_device_ops {
        &Self::VTABLE
    }
}

/// One page of the user's IOVA space pinned by [`Device::pin_page`]; unpinned on drop.
///
/// The guard holds a reference to the device, so it never outlives it. A guard dropped after
/// the pin was reclaimed (the IOVA was unmapped or the device closed while it was alive)
/// does nothing. Dropping sleeps.
pub struct PinnedPage<T: Ops> {
    dev: ARef<Device<T>>,
    page: u64,
    id: u64,
    phys: u64,
}

impl<T: Ops> PinnedPage<T> {
    /// IOVA of the page (page aligned).
    pub fn iova(&self) -> u64 {
        self.page
    }

    /// Physical address of the page.
    pub fn phys(&self) -> u64 {
        self.phys
    }
}

impl<T: Ops> Drop for PinnedPage<T> {
    fn drop(&mut self) {
        let mut table = self.dev.pins.lock();
        if table.pinned.remove(&(self.page, self.id)).is_some() {
            // SAFETY: the entry stood for this guard's pin, done in the current open session
            // and not undone (`PinTable` invariant); removing it makes this the only unpin.
            unsafe { sys::vfio_unpin_pages(self.dev.as_raw(), self.page, 1) };
        }
    }
}

impl<T: Ops> core::ops::Deref for Device<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: every `&Device<T>` handed out is initialised (ARefs only after init,
        // callbacks only after registration).
        unsafe { self.data.assume_init_ref() }
    }
}

// SAFETY: the refcount of `vdev->device` owns the allocation; get/put_device manage it.
unsafe impl<T: Ops> AlwaysRefCounted for Device<T> {
    fn inc_ref(&self) {
        // SAFETY: `self` is alive.
        unsafe { sys::get_device(&raw mut (*self.as_raw()).device) };
    }
    /// # Safety
    /// As [`AlwaysRefCounted::dec_ref`].
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: the caller owns a reference.
        unsafe { sys::gpuvm_helper_vfio_put_device(obj.as_ptr().cast()) };
    }
}

/// A `vfio_register_emulated_iommu_dev()` registration, undone on drop.
///
/// Dropping blocks until userspace closed every fd of the device (the core calls
/// [`Ops::request`] meanwhile, every 10 s), so drop it while the mdev is still bound.
pub struct Registration<T: Ops> {
    dev: ARef<Device<T>>,
}

impl<T: Ops> Registration<T> {
    /// Registers `dev` with the VFIO core (device files appear).
    pub fn new(dev: ARef<Device<T>>) -> Result<Self> {
        // SAFETY: `dev` is allocated and initialised, not yet registered.
        to_result(unsafe { sys::vfio_register_emulated_iommu_dev(dev.as_raw()) })?;
        Ok(Self { dev })
    }

    /// The registered device.
    pub fn device(&self) -> &Device<T> {
        &self.dev
    }
}

impl<T: Ops> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `new`.
        unsafe { sys::vfio_unregister_group_dev(self.dev.as_raw()) };
    }
}
