//! Host memory regions: VRAM and the system memory the "driver" side maps for DMA.
//!
//! A [`HostMemory`] is a shared mapping (a memfd the model creates, or an fd it was given,
//! such as the VM's RAM from a vfio-user DMA_MAP). Both the model and its user read and
//! write it concurrently, like device memory: 32/64-bit aligned accesses are single atomic
//! operations; bulk copies are plain byte copies with no ordering between them (a real GPU
//! gives no more). Every access is bounds-checked; an out-of-range access returns `None` /
//! `false` and touches nothing.
//!
//! A region the model creates itself (VRAM) stays sparse: zeros written over whole pages (a
//! copy from zeros, a zero fill: what a scrub does) give those pages back to the kernel
//! (`FALLOCATE_PUNCH_HOLE`, which reads back as zeros) instead of allocating them, so
//! clearing a 6 GiB VRAM costs no memory. Regions mapped from someone else's file (guest
//! RAM) are always written.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A shared, bounds-checked mapping of host memory.
pub struct HostMemory {
    ptr: *mut u8,
    len: usize,
    fd: Option<File>,
    /// Zeros over whole pages are punched out of the backing memfd (our own VRAM only).
    sparse: bool,
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
            sparse: true,
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
            sparse: false,
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
        if byte == 0 {
            self.zero(off, len);
            return true;
        }
        // SAFETY: range checked above.
        unsafe { std::ptr::write_bytes(self.ptr.add(off as usize), byte, len as usize) };
        true
    }

    /// Zeroes `[off, off + len)` (in range): whole pages of a sparse region are punched out of
    /// its memfd (they read back as zeros and hold no memory), the rest is written.
    fn zero(&self, off: u64, len: u64) {
        let page = page_size();
        let (start, end) = (off, off + len);
        let (first, last) = (start.next_multiple_of(page), end / page * page);
        let punched = self.sparse && first < last && self.punch(first, last - first);
        let written: &[(u64, u64)] = if punched { &[(start, first.min(end)), (last.max(start), end)] } else { &[(start, end)] };
        for &(a, b) in written.iter().filter(|(a, b)| a < b) {
            // SAFETY: inside [off, off + len), which the caller checked.
            unsafe { std::ptr::write_bytes(self.ptr.add(a as usize), 0, (b - a) as usize) };
        }
    }

    /// Deallocates `[off, off + len)` (page aligned) of the backing memfd; false if the kernel
    /// refused (the caller then writes the zeros).
    fn punch(&self, off: u64, len: u64) -> bool {
        let Some(f) = &self.fd else { return false };
        let (Ok(o), Ok(l)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else { return false };
        // SAFETY: plain syscall on a descriptor we own; the mapping stays valid (the pages
        // read back as zeros).
        unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, o, l) == 0 }
    }

    /// Whether `[off, off + len)` (in range) holds only zero bytes.
    fn is_zero(&self, off: u64, len: u64) -> bool {
        // SAFETY: in range (checked by the caller); read as plain bytes, like `read`.
        let b = unsafe { std::slice::from_raw_parts(self.ptr.add(off as usize), len as usize) };
        // Slice comparison is a memcmp, fast in unoptimised test builds too.
        static ZEROS: [u8; 4096] = [0; 4096];
        b.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
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
    /// mapping and may overlap). Zeros copied over whole pages of a sparse region free them.
    pub fn copy_from(&self, dst_off: u64, src: &HostMemory, src_off: u64, len: u64) -> bool {
        if !self.range_ok(dst_off, len as usize) || !src.range_ok(src_off, len as usize) {
            return false;
        }
        if self.sparse && len >= page_size() && src.is_zero(src_off, len) {
            self.zero(dst_off, len);
            return true;
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

/// The kernel's page size (the granule of `FALLOCATE_PUNCH_HOLE`).
fn page_size() -> u64 {
    // SAFETY: plain libc call without pointers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
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

    /// Blocks of the memfd backing `m` (st_blocks, 512-byte units).
    fn blocks(m: &HostMemory) -> u64 {
        // SAFETY: fstat into a zeroed struct on a descriptor `m` owns.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(m.file().unwrap().as_raw_fd(), &mut st) }, 0);
        st.st_blocks as u64
    }

    /// Zeros over whole pages (a fill, or a copy from zeros: a scrub) leave the region
    /// sparse and read back as zeros; the partial pages at the edges are written; other data
    /// is copied as usual.
    #[test]
    fn zeroing_keeps_vram_sparse() {
        const MIB: u64 = 1 << 20;
        let vram = HostMemory::new("t", 64 * MIB).unwrap();
        let zeros = HostMemory::new("z", MIB).unwrap();
        assert!(vram.fill(0, 64 * MIB, 0xa5));
        let full = blocks(&vram);
        assert!(full >= 64 * MIB / 512, "filled: {full} blocks");
        // A copy from zeros over [3 + 5, 48 MiB - 7).
        let (a, b) = (3 * MIB + 5, 48 * MIB - 7);
        let mut off = a;
        while off < b {
            let n = MIB.min(b - off);
            assert!(vram.copy_from(off, &zeros, 0, n));
            off += n;
        }
        assert!(blocks(&vram) <= full - (44 * MIB) / 512, "punched: {} of {full} blocks left", blocks(&vram));
        let word = |o: u64| vram.read32(o).unwrap();
        assert_eq!(word(a - 4) & 0xff, 0xa5, "byte before the range kept");
        assert_eq!((word(a - 1) >> 8) & 0xff, 0, "the range starts zero");
        assert_eq!(word(a + 3), 0);
        assert_eq!(word(20 * MIB), 0, "a punched page reads zero");
        assert_eq!(word(b - 4), 0);
        assert_eq!(word(b), 0xa5a5_a5a5, "after the range kept");
        // A zero fill of the rest, then the whole region is (almost) free again.
        assert!(vram.fill(0, 64 * MIB, 0));
        assert!(blocks(&vram) < 64, "all punched: {} blocks", blocks(&vram));
        assert!((0..64 * MIB).step_by(MIB as usize).all(|o| word(o) == 0));
        // Non-zero data is copied, not punched.
        let data = HostMemory::new("d", MIB).unwrap();
        assert!(data.fill(0, MIB, 0x3c));
        assert!(vram.copy_from(MIB, &data, 0, MIB));
        assert_eq!(word(MIB + 4096), 0x3c3c_3c3c);
        // A region mapped from another file (guest RAM) is written, never punched.
        let guest = HostMemory::from_file(vram.file().unwrap(), 0, 4 * MIB).unwrap();
        assert!(guest.copy_from(MIB, &zeros, 0, MIB));
        assert_eq!(word(MIB + 4096), 0, "zeroed through the other mapping");
    }
}
