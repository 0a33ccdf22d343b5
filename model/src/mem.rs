//! Host memory regions: VRAM and the system memory the "driver" side maps for DMA.
//!
//! A [`HostMemory`] is a shared mapping (a memfd the model creates, or an fd it was given,
//! such as the VM's RAM from a vfio-user DMA_MAP). Both the model and its user read and
//! write it concurrently, like device memory: 32/64-bit aligned accesses are single atomic
//! operations; bulk copies are plain byte copies with no ordering between them (a real GPU
//! gives no more). Every access is bounds-checked; an out-of-range access returns `None` /
//! `false` and touches nothing.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A shared, bounds-checked mapping of host memory.
pub struct HostMemory {
    ptr: *mut u8,
    len: usize,
    fd: Option<File>,
}

// SAFETY: the mapping is plain shared memory; all accesses go through bounds-checked methods
// that use atomic word operations or raw byte copies, which is the device-memory contract
// described in the module docs.
unsafe impl Send for HostMemory {}
// SAFETY: see above; no method hands out references into the mapping.
unsafe impl Sync for HostMemory {}

fn map_fd(fd: &File, offset: u64, len: usize) -> io::Result<*mut u8> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "zero-length mapping",
        ));
    }
    // SAFETY: mmap of a file descriptor we own a handle to; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
            fd.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

impl HostMemory {
    /// A new zero-filled region backed by an anonymous memfd (sparse: pages are allocated on
    /// first touch, so a 6 GiB VRAM costs nothing until used).
    pub fn new(name: &str, len: u64) -> io::Result<HostMemory> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain syscall; the fd is checked and then owned by `File`.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len)?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let ptr = map_fd(&file, 0, len)?;
        Ok(HostMemory {
            ptr,
            len,
            fd: Some(file),
        })
    }

    /// Maps `len` bytes of `fd` starting at `offset` (e.g. guest RAM from a DMA_MAP).
    pub fn from_file(fd: &File, offset: u64, len: u64) -> io::Result<HostMemory> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let ptr = map_fd(fd, offset, len)?;
        Ok(HostMemory {
            ptr,
            len,
            fd: fd.try_clone().ok(),
        })
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The backing file, if any (for handing the region to another process).
    pub fn file(&self) -> Option<&File> {
        self.fd.as_ref()
    }

    fn range_ok(&self, off: u64, len: usize) -> bool {
        off.checked_add(len as u64)
            .is_some_and(|end| end <= self.len as u64)
    }

    pub fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        if !self.range_ok(off, buf.len()) {
            return false;
        }
        // SAFETY: range checked above; the mapping lives as long as self.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off as usize), buf.as_mut_ptr(), buf.len())
        };
        true
    }

    pub fn write(&self, off: u64, buf: &[u8]) -> bool {
        if !self.range_ok(off, buf.len()) {
            return false;
        }
        // SAFETY: range checked above.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr.add(off as usize), buf.len())
        };
        true
    }

    pub fn fill(&self, off: u64, len: u64, byte: u8) -> bool {
        if !self.range_ok(off, len as usize) {
            return false;
        }
        // SAFETY: range checked above.
        unsafe { std::ptr::write_bytes(self.ptr.add(off as usize), byte, len as usize) };
        true
    }

    pub fn read32(&self, off: u64) -> Option<u32> {
        if !self.range_ok(off, 4) {
            return None;
        }
        if off.is_multiple_of(4) {
            // SAFETY: in range and 4-byte aligned (the mapping is page aligned).
            let a = unsafe { &*(self.ptr.add(off as usize) as *const AtomicU32) };
            return Some(a.load(Ordering::Acquire));
        }
        let mut b = [0u8; 4];
        self.read(off, &mut b);
        Some(u32::from_le_bytes(b))
    }

    pub fn write32(&self, off: u64, v: u32) -> bool {
        if !self.range_ok(off, 4) {
            return false;
        }
        if off.is_multiple_of(4) {
            // SAFETY: in range and aligned.
            let a = unsafe { &*(self.ptr.add(off as usize) as *const AtomicU32) };
            a.store(v, Ordering::Release);
            return true;
        }
        self.write(off, &v.to_le_bytes())
    }

    pub fn read64(&self, off: u64) -> Option<u64> {
        if !self.range_ok(off, 8) {
            return None;
        }
        if off.is_multiple_of(8) {
            // SAFETY: in range and aligned.
            let a = unsafe { &*(self.ptr.add(off as usize) as *const AtomicU64) };
            return Some(a.load(Ordering::Acquire));
        }
        let mut b = [0u8; 8];
        self.read(off, &mut b);
        Some(u64::from_le_bytes(b))
    }

    pub fn write64(&self, off: u64, v: u64) -> bool {
        if !self.range_ok(off, 8) {
            return false;
        }
        if off.is_multiple_of(8) {
            // SAFETY: in range and aligned.
            let a = unsafe { &*(self.ptr.add(off as usize) as *const AtomicU64) };
            a.store(v, Ordering::Release);
            return true;
        }
        self.write(off, &v.to_le_bytes())
    }

    /// Copies `len` bytes from `src[src_off..]` to `self[dst_off..]` (regions may be the same
    /// mapping and may overlap).
    pub fn copy_from(&self, dst_off: u64, src: &HostMemory, src_off: u64, len: u64) -> bool {
        if !self.range_ok(dst_off, len as usize) || !src.range_ok(src_off, len as usize) {
            return false;
        }
        // SAFETY: both ranges checked; `copy` tolerates overlap.
        unsafe {
            std::ptr::copy(
                src.ptr.add(src_off as usize),
                self.ptr.add(dst_off as usize),
                len as usize,
            )
        };
        true
    }
}

impl Drop for HostMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this object created.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let m = HostMemory::new("t", 8192).unwrap();
        assert!(m.write32(8188, 0x1234_5678));
        assert_eq!(m.read32(8188), Some(0x1234_5678));
        assert_eq!(m.read32(8190), None);
        assert!(!m.write(8190, &[0; 4]));
        assert_eq!(m.read64(u64::MAX - 3), None);
        assert!(m.write32(3, 0xaabb_ccdd));
        assert_eq!(m.read32(3), Some(0xaabb_ccdd));
    }
}
