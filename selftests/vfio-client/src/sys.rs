//! The VFIO and iommufd userspace ABI this client uses: the declarations shared with the guest
//! driver (constants, ioctl numbers, `repr(C)` structs, all checked against Linux 7.3's headers)
//! come from [`gpuvm_vfio_uapi`] and are re-exported here; what is the client's own stays here.
//!
//! Structs are plain `repr(C)` values; the ioctl layer moves them as bytes ([`Pod`]) so that a
//! test can hand the kernel a deliberately wrong `argsz` or a truncated buffer.

pub use gpuvm_vfio_uapi::*;

/// An ioctl number no VFIO device handles: `_IO(';', 0xf0)` (VFIO uses 100..=122, iommufd
/// 0x80..=0x9f).
pub const UNKNOWN_VFIO_IOCTL: u64 = vfio_io(0xf0);
/// A foreign ioctl (TCGETS) sent to the device fd.
pub const FOREIGN_IOCTL: u64 = 0x5401;

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

// SAFETY: all of these are repr(C) structs of u32/i32/u64 fields laid out without padding
// (gpuvm_vfio_uapi's size assertions would catch a hole).
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
pub const IRQ_SET_MINSZ: u32 = VFIO_IRQ_SET_HDR;

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(DEVICE_INFO_MINSZ as usize == offset_of!(vfio_device_info, num_irqs) + 4);
    assert!(REGION_INFO_MINSZ as usize == offset_of!(vfio_region_info, offset) + 8);
    assert!(IRQ_INFO_MINSZ as usize == offset_of!(vfio_irq_info, count) + 4);
    assert!(IRQ_SET_MINSZ as usize == size_of::<vfio_irq_set>());
};
