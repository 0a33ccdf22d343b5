//! The subset of the VFIO and iommufd userspace ABI that gpuvm's userspace (the guest driver's
//! VFIO transport and the VFIO test client) uses, declared by hand in one place.
//!
//! Checked against Linux 7.3's include/uapi/linux/{vfio,iommufd}.h: every ioctl there is
//! `_IO(';', nr)` (no size bits), and the struct sizes, field offsets and ioctl numbers asserted
//! at the end are what a C program including those headers printed (sizeof / offsetof / the
//! macro values).
//!
//! Structs are plain `repr(C)` values of integer fields with no padding.

#![no_std]
#![allow(non_camel_case_types)]

/// `VFIO_TYPE` (also iommufd's `IOMMUFD_TYPE`).
pub const VFIO_TYPE: u64 = b';' as u64;
/// `VFIO_BASE`: the first VFIO ioctl number.
pub const VFIO_BASE: u64 = 100;
/// `_IO(VFIO_TYPE, nr)`.
pub const fn vfio_io(nr: u64) -> u64 {
    (VFIO_TYPE << 8) | nr
}

pub const VFIO_API_VERSION: i32 = 0;
pub const VFIO_TYPE1_IOMMU: u64 = 1;
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;
pub const VFIO_NOIOMMU_IOMMU: u64 = 8;

pub const VFIO_GET_API_VERSION: u64 = vfio_io(VFIO_BASE);
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(VFIO_BASE + 1);
pub const VFIO_SET_IOMMU: u64 = vfio_io(VFIO_BASE + 2);
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(VFIO_BASE + 3);
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(VFIO_BASE + 4);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(VFIO_BASE + 6);
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(VFIO_BASE + 7);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(VFIO_BASE + 8);
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(VFIO_BASE + 9);
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(VFIO_BASE + 10);
pub const VFIO_DEVICE_RESET: u64 = vfio_io(VFIO_BASE + 11);
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(VFIO_BASE + 13);
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(VFIO_BASE + 14);
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio_io(VFIO_BASE + 18);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = vfio_io(VFIO_BASE + 19);

pub const IOMMU_DESTROY: u64 = vfio_io(0x80);
pub const IOMMU_IOAS_ALLOC: u64 = vfio_io(0x81);
pub const IOMMU_IOAS_MAP: u64 = vfio_io(0x85);
pub const IOMMU_IOAS_UNMAP: u64 = vfio_io(0x86);

pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;

pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
pub const VFIO_REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;

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

pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// vfio-pci region indices (enum in vfio.h).
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
pub const VFIO_PCI_BAR1_REGION_INDEX: u32 = 1;
pub const VFIO_PCI_BAR3_REGION_INDEX: u32 = 3;
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;

/// vfio-pci IRQ indices (enum in vfio.h).
pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
pub const VFIO_PCI_NUM_IRQS: u32 = 5;

pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

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

/// `struct vfio_info_cap_header`.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_info_cap_header {
    pub id: u16,
    pub version: u16,
    pub next: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_irq_info {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// `struct vfio_irq_set` without its `data[]` tail.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_irq_set {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}
/// The header alone: sizeof(struct vfio_irq_set) = 20.
pub const VFIO_IRQ_SET_HDR: u32 = 20;

/// `struct vfio_irq_set` followed by one eventfd (the `data[]` tail).
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_irq_set_one {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    pub fd: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_iommu_type1_dma_map {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct vfio_iommu_type1_dma_unmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
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
pub struct iommu_destroy {
    pub size: u32,
    pub id: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct iommu_ioas_alloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct iommu_ioas_map {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct iommu_ioas_unmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<vfio_group_status>() == 8);
    assert!(size_of::<vfio_device_info>() == 24);
    assert!(size_of::<vfio_region_info>() == 32);
    assert!(offset_of!(vfio_region_info, size) == 16);
    assert!(offset_of!(vfio_region_info, offset) == 24);
    assert!(size_of::<vfio_irq_info>() == 16);
    assert!(size_of::<vfio_irq_set>() == VFIO_IRQ_SET_HDR as usize);
    assert!(size_of::<vfio_irq_set_one>() == VFIO_IRQ_SET_HDR as usize + 4);
    assert!(size_of::<vfio_iommu_type1_dma_map>() == 32);
    assert!(offset_of!(vfio_iommu_type1_dma_map, vaddr) == 8);
    assert!(offset_of!(vfio_iommu_type1_dma_map, iova) == 16);
    assert!(size_of::<vfio_iommu_type1_dma_unmap>() == 24);
    assert!(size_of::<vfio_device_bind_iommufd>() == 24);
    assert!(offset_of!(vfio_device_bind_iommufd, out_devid) == 12);
    assert!(offset_of!(vfio_device_bind_iommufd, token_uuid_ptr) == 16);
    assert!(size_of::<vfio_device_attach_iommufd_pt>() == 16);
    assert!(size_of::<iommu_ioas_alloc>() == 12);
    assert!(size_of::<iommu_ioas_map>() == 40);
    assert!(size_of::<iommu_ioas_unmap>() == 24);
    assert!(size_of::<iommu_destroy>() == 8);
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
    assert!(VFIO_IOMMU_MAP_DMA == 0x3b71);
    assert!(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76);
    assert!(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77);
    assert!(IOMMU_IOAS_ALLOC == 0x3b81);
    assert!(IOMMU_IOAS_MAP == 0x3b85);
    assert!(IOMMU_IOAS_UNMAP == 0x3b86);
};
