//! The VFIO and iommufd userspace ABI this client uses, declared by hand and checked against
//! Linux 7.3's include/uapi/linux/{vfio,iommufd}.h: the sizes and ioctl numbers asserted at the
//! end are what a C program including those headers printed. Every ioctl there is `_IO(';', nr)`
//! (no size bits).
//!
//! Structs are plain `repr(C)` values; the ioctl layer moves them as bytes ([`Pod`]) so that a
//! test can hand the kernel a deliberately wrong `argsz` or a truncated buffer.

#![allow(non_camel_case_types)]

const VFIO_TYPE: u64 = b';' as u64;
const VFIO_BASE: u64 = 100;
const fn io(nr: u64) -> u64 {
    (VFIO_TYPE << 8) | nr
}

pub const VFIO_API_VERSION: i32 = 0;
pub const VFIO_TYPE1_IOMMU: u64 = 1;
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;

pub const VFIO_GET_API_VERSION: u64 = io(VFIO_BASE);
pub const VFIO_CHECK_EXTENSION: u64 = io(VFIO_BASE + 1);
pub const VFIO_SET_IOMMU: u64 = io(VFIO_BASE + 2);
pub const VFIO_GROUP_GET_STATUS: u64 = io(VFIO_BASE + 3);
pub const VFIO_GROUP_SET_CONTAINER: u64 = io(VFIO_BASE + 4);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = io(VFIO_BASE + 6);
pub const VFIO_DEVICE_GET_INFO: u64 = io(VFIO_BASE + 7);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = io(VFIO_BASE + 8);
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = io(VFIO_BASE + 9);
pub const VFIO_DEVICE_SET_IRQS: u64 = io(VFIO_BASE + 10);
pub const VFIO_DEVICE_RESET: u64 = io(VFIO_BASE + 11);
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = io(VFIO_BASE + 18);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = io(VFIO_BASE + 19);
pub const IOMMU_IOAS_ALLOC: u64 = io(0x81);

/// An ioctl number no VFIO device handles: `_IO(';', 0xf0)` (VFIO uses 100..=122, iommufd
/// 0x80..=0x9f).
pub const UNKNOWN_VFIO_IOCTL: u64 = io(0xf0);
/// A foreign ioctl (TCGETS) sent to the device fd.
pub const FOREIGN_IOCTL: u64 = 0x5401;

pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;

pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;

pub const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
pub const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
pub const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
pub const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
pub const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
pub const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/// vfio-pci region indices (enum in vfio.h).
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
pub const VFIO_PCI_BAR1_REGION_INDEX: u32 = 1;
pub const VFIO_PCI_BAR3_REGION_INDEX: u32 = 3;
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;

/// vfio-pci IRQ indices.
pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
pub const VFIO_PCI_NUM_IRQS: u32 = 5;

/// vfio-pci encodes the region index in the file offset: `index << 40`.
pub const VFIO_PCI_OFFSET_SHIFT: u32 = 40;
pub const fn region_offset(index: u32) -> u64 {
    (index as u64) << VFIO_PCI_OFFSET_SHIFT
}

/// Plain data that may be viewed as bytes and rebuilt from any bytes.
///
/// # Safety
/// Implementors are `repr(C)` structs of integer fields with no padding.
pub unsafe trait Pod: Copy + Default {
    fn to_bytes(&self) -> Vec<u8> {
        // SAFETY: Pod types have no padding, so all size_of::<Self>() bytes are initialised.
        unsafe { std::slice::from_raw_parts(self as *const Self as *const u8, std::mem::size_of::<Self>()) }.to_vec()
    }
    /// Rebuilds a value from the first `size_of::<Self>()` bytes (missing bytes read as 0).
    fn from_bytes(b: &[u8]) -> Self {
        let mut v = Self::default();
        let n = b.len().min(std::mem::size_of::<Self>());
        // SAFETY: copies at most size_of::<Self>() bytes into a Pod value; any bit pattern of
        // integer fields is valid.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), &mut v as *mut Self as *mut u8, n) };
        v
    }
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_group_status {
    pub argsz: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_device_info {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_region_info {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_irq_info {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// `struct vfio_irq_set` without its `data[]` tail (the tail is appended as bytes).
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_irq_set {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_device_bind_iommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
    pub token_uuid_ptr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_device_attach_iommufd_pt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
    pub pasid: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct iommu_ioas_alloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

// SAFETY: all of these are repr(C) structs of u32/i32/u64 fields laid out without padding
// (the size assertions below would catch a hole).
unsafe impl Pod for vfio_group_status {}
// SAFETY: as above.
unsafe impl Pod for vfio_device_info {}
// SAFETY: as above.
unsafe impl Pod for vfio_region_info {}
// SAFETY: as above.
unsafe impl Pod for vfio_irq_info {}
// SAFETY: as above.
unsafe impl Pod for vfio_irq_set {}
// SAFETY: as above.
unsafe impl Pod for vfio_device_bind_iommufd {}
// SAFETY: as above.
unsafe impl Pod for vfio_device_attach_iommufd_pt {}
// SAFETY: as above.
unsafe impl Pod for iommu_ioas_alloc {}

/// `offsetofend(struct vfio_device_info, num_irqs)`: the smallest argsz GET_INFO accepts.
pub const DEVICE_INFO_MINSZ: u32 = 16;
/// `offsetofend(struct vfio_region_info, offset)`.
pub const REGION_INFO_MINSZ: u32 = 32;
/// `offsetofend(struct vfio_irq_info, count)`.
pub const IRQ_INFO_MINSZ: u32 = 16;
/// `offsetofend(struct vfio_irq_set, count)` = sizeof(struct vfio_irq_set).
pub const IRQ_SET_MINSZ: u32 = 20;

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<vfio_group_status>() == 8);
    assert!(size_of::<vfio_device_info>() == 24);
    assert!(size_of::<vfio_region_info>() == 32);
    assert!(offset_of!(vfio_region_info, size) == 16);
    assert!(offset_of!(vfio_region_info, offset) == 24);
    assert!(size_of::<vfio_irq_info>() == 16);
    assert!(size_of::<vfio_irq_set>() == IRQ_SET_MINSZ as usize);
    assert!(size_of::<vfio_device_bind_iommufd>() == 24);
    assert!(offset_of!(vfio_device_bind_iommufd, token_uuid_ptr) == 16);
    assert!(size_of::<vfio_device_attach_iommufd_pt>() == 16);
    assert!(size_of::<iommu_ioas_alloc>() == 12);
    // ioctl numbers as printed from the 7.3 headers.
    assert!(VFIO_GET_API_VERSION == 0x3b64);
    assert!(VFIO_CHECK_EXTENSION == 0x3b65);
    assert!(VFIO_SET_IOMMU == 0x3b66);
    assert!(VFIO_GROUP_GET_STATUS == 0x3b67);
    assert!(VFIO_GROUP_SET_CONTAINER == 0x3b68);
    assert!(VFIO_GROUP_GET_DEVICE_FD == 0x3b6a);
    assert!(VFIO_DEVICE_GET_INFO == 0x3b6b);
    assert!(VFIO_DEVICE_GET_REGION_INFO == 0x3b6c);
    assert!(VFIO_DEVICE_GET_IRQ_INFO == 0x3b6d);
    assert!(VFIO_DEVICE_SET_IRQS == 0x3b6e);
    assert!(VFIO_DEVICE_RESET == 0x3b6f);
    assert!(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76);
    assert!(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77);
    assert!(IOMMU_IOAS_ALLOC == 0x3b81);
};
