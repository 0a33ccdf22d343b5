//! A VFIO device as the tests see it: ioctls on byte buffers and pread/pwrite at region
//! offsets ([`Device`]), typed helpers on top ([`DeviceExt`]), and the real thing opened through
//! either VFIO path ([`VfioDevice`]). Tests run against `dyn Device`, so the host unit tests can
//! drive them with an in-process reference of the contract instead of the kernel.

use crate::errno::Errno;
use crate::sys::*;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The raw operations on a VFIO device fd.
pub trait Device {
    /// `ioctl(fd, req, arg)`; `None` passes a NULL pointer.
    fn ioctl(&self, req: u64, arg: Option<&mut [u8]>) -> Result<i32, Errno>;
    /// `pread` at a device-file offset (region offset + offset in the region).
    fn pread(&self, buf: &mut [u8], pos: u64) -> Result<usize, Errno>;
    fn pwrite(&self, buf: &[u8], pos: u64) -> Result<usize, Errno>;
}

/// Typed wrappers; `*_argsz` variants send a chosen argsz in a buffer large enough for the
/// whole struct (the kernel copies a fixed minimum however small argsz claims to be).
pub trait DeviceExt: Device {
    fn get_info_argsz(&self, argsz: u32) -> Result<vfio_device_info, Errno> {
        let mut b = vfio_device_info { argsz, ..Default::default() }.to_bytes();
        self.ioctl(VFIO_DEVICE_GET_INFO, Some(&mut b))?;
        Ok(vfio_device_info::from_bytes(&b))
    }
    fn get_info(&self) -> Result<vfio_device_info, Errno> {
        self.get_info_argsz(std::mem::size_of::<vfio_device_info>() as u32)
    }
    fn region_info_argsz(&self, index: u32, argsz: u32) -> Result<vfio_region_info, Errno> {
        let mut b = vfio_region_info { argsz, index, ..Default::default() }.to_bytes();
        self.ioctl(VFIO_DEVICE_GET_REGION_INFO, Some(&mut b))?;
        Ok(vfio_region_info::from_bytes(&b))
    }
    fn region_info(&self, index: u32) -> Result<vfio_region_info, Errno> {
        self.region_info_argsz(index, std::mem::size_of::<vfio_region_info>() as u32)
    }
    fn irq_info_argsz(&self, index: u32, argsz: u32) -> Result<vfio_irq_info, Errno> {
        let mut b = vfio_irq_info { argsz, index, ..Default::default() }.to_bytes();
        self.ioctl(VFIO_DEVICE_GET_IRQ_INFO, Some(&mut b))?;
        Ok(vfio_irq_info::from_bytes(&b))
    }
    fn irq_info(&self, index: u32) -> Result<vfio_irq_info, Errno> {
        self.irq_info_argsz(index, std::mem::size_of::<vfio_irq_info>() as u32)
    }
    /// SET_IRQS with the header as given (argsz included) followed by `data`.
    fn set_irqs_raw(&self, hdr: vfio_irq_set, data: &[u8]) -> Result<(), Errno> {
        let mut b = hdr.to_bytes();
        b.extend_from_slice(data);
        self.ioctl(VFIO_DEVICE_SET_IRQS, Some(&mut b)).map(|_| ())
    }
    /// SET_IRQS with a correct argsz for `data`.
    fn set_irqs(&self, flags: u32, index: u32, start: u32, count: u32, data: &[u8]) -> Result<(), Errno> {
        let argsz = IRQ_SET_MINSZ + data.len() as u32;
        self.set_irqs_raw(vfio_irq_set { argsz, flags, index, start, count }, data)
    }
    /// Installs (or with -1 removes) the trigger eventfd of vector 0 of `index`.
    fn set_eventfd(&self, index: u32, fd: RawFd) -> Result<(), Errno> {
        self.set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1, &fd.to_ne_bytes())
    }
    /// DATA_NONE | TRIGGER, count 1: fires vector 0 of `index`.
    fn fire(&self, index: u32) -> Result<(), Errno> {
        self.set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1, &[])
    }
    /// DATA_NONE | TRIGGER, count 0: tears the index down.
    fn teardown(&self, index: u32) -> Result<(), Errno> {
        self.set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0, &[])
    }
    fn reset(&self) -> Result<(), Errno> {
        self.ioctl(VFIO_DEVICE_RESET, None).map(|_| ())
    }
    /// Reads `buf.len()` bytes at `off` of region `index`; Ok(n) may be short.
    fn region_read(&self, index: u32, off: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.pread(buf, region_offset(index) + off)
    }
    fn region_write(&self, index: u32, off: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.pwrite(buf, region_offset(index) + off)
    }
    /// A little-endian read of 1, 2 or 4 bytes that must transfer in full.
    fn read_le(&self, index: u32, off: u64, size: usize) -> Result<u32, String> {
        let mut b = [0u8; 4];
        match self.region_read(index, off, &mut b[..size]) {
            Ok(n) if n == size => Ok(u32::from_le_bytes(b)),
            Ok(n) => Err(format!("region {index} read of {size} bytes at {off:#x}: short read ({n} bytes)")),
            Err(e) => Err(format!("region {index} read of {size} bytes at {off:#x}: {e}")),
        }
    }
    fn write_le(&self, index: u32, off: u64, size: usize, val: u32) -> Result<(), String> {
        let b = val.to_le_bytes();
        match self.region_write(index, off, &b[..size]) {
            Ok(n) if n == size => Ok(()),
            Ok(n) => Err(format!("region {index} write of {size} bytes at {off:#x}: short write ({n} bytes)")),
            Err(e) => Err(format!("region {index} write of {size} bytes at {off:#x}: {e}")),
        }
    }
    fn cfg_read(&self, off: u64, size: usize) -> Result<u32, String> {
        self.read_le(VFIO_PCI_CONFIG_REGION_INDEX, off, size)
    }
    fn cfg_write(&self, off: u64, size: usize, val: u32) -> Result<(), String> {
        self.write_le(VFIO_PCI_CONFIG_REGION_INDEX, off, size, val)
    }
}

impl<T: Device + ?Sized> DeviceExt for T {}

fn raw_ioctl(fd: RawFd, req: u64, arg: Option<&mut [u8]>) -> Result<i32, Errno> {
    let p = arg.map_or(std::ptr::null_mut(), |b| b.as_mut_ptr());
    // SAFETY: `p` is NULL or points to a buffer the caller sized for `req` (the typed helpers
    // always pass at least the whole struct, and never claim an argsz beyond the buffer).
    let r = unsafe { libc::ioctl(fd, req as _, p) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn ioctl_val(fd: RawFd, req: u64, val: u64) -> Result<i32, Errno> {
    // SAFETY: requests that take an integer argument.
    let r = unsafe { libc::ioctl(fd, req as _, val as libc::c_ulong) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn open_rw(path: &Path) -> Result<OwnedFd, String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("{}: NUL in path", path.display()))?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("open {}: {}", path.display(), Errno::last()));
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The two ways a VFIO device is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioPath {
    /// `/dev/vfio/N` group + `/dev/vfio/vfio` container with a type1 IOMMU.
    Group,
    /// `/dev/vfio/devices/vfioX` + `/dev/iommu` (bind, IOAS, attach).
    Cdev,
}

impl std::str::FromStr for VfioPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "group" => Ok(VfioPath::Group),
            "cdev" => Ok(VfioPath::Cdev),
            _ => Err(format!("unknown VFIO path '{s}' (group|cdev)")),
        }
    }
}

impl std::fmt::Display for VfioPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VfioPath::Group => "group",
            VfioPath::Cdev => "cdev",
        })
    }
}

/// An open VFIO device fd and what keeps it usable. Fields drop in order: the device fd is
/// closed before its iommufd, group and container.
pub struct VfioDevice {
    device: OwnedFd,
    _iommufd: Option<OwnedFd>,
    _group: Option<OwnedFd>,
    _container: Option<OwnedFd>,
    pub desc: String,
}

pub fn mdev_sysfs(uuid: &str) -> PathBuf {
    Path::new("/sys/bus/mdev/devices").join(uuid)
}

impl VfioDevice {
    pub fn open_mdev(uuid: &str, path: VfioPath) -> Result<VfioDevice, String> {
        match path {
            VfioPath::Group => Self::open_group(uuid),
            VfioPath::Cdev => Self::open_cdev(uuid),
        }
    }

    fn open_group(uuid: &str) -> Result<VfioDevice, String> {
        let link = mdev_sysfs(uuid).join("iommu_group");
        let target = fs::read_link(&link).map_err(|e| format!("readlink {}: {e}", link.display()))?;
        let group_path = Path::new("/dev/vfio").join(target.file_name().unwrap_or_default());
        let container = open_rw(Path::new("/dev/vfio/vfio"))?;
        let c = container.as_raw_fd();
        let v = ioctl_val(c, VFIO_GET_API_VERSION, 0).map_err(|e| format!("VFIO_GET_API_VERSION: {e}"))?;
        if v != VFIO_API_VERSION {
            return Err(format!("VFIO API version {v}, expected {VFIO_API_VERSION}"));
        }
        let group = open_rw(&group_path)?;
        let g = group.as_raw_fd();
        let gname = group_path.display();
        let mut st = vfio_group_status { argsz: 8, flags: 0 }.to_bytes();
        raw_ioctl(g, VFIO_GROUP_GET_STATUS, Some(&mut st)).map_err(|e| format!("VFIO_GROUP_GET_STATUS {gname}: {e}"))?;
        if vfio_group_status::from_bytes(&st).flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(format!("{gname}: group not viable"));
        }
        let mut cfd = c.to_ne_bytes();
        raw_ioctl(g, VFIO_GROUP_SET_CONTAINER, Some(&mut cfd)).map_err(|e| format!("VFIO_GROUP_SET_CONTAINER {gname}: {e}"))?;
        let iommu = [VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_IOMMU]
            .into_iter()
            .find(|&t| ioctl_val(c, VFIO_CHECK_EXTENSION, t).is_ok_and(|r| r > 0))
            .ok_or("container supports neither VFIO_TYPE1v2_IOMMU nor VFIO_TYPE1_IOMMU")?;
        ioctl_val(c, VFIO_SET_IOMMU, iommu).map_err(|e| format!("VFIO_SET_IOMMU {iommu}: {e}"))?;
        let name = CString::new(uuid).map_err(|_| "NUL in uuid".to_string())?;
        // SAFETY: the argument is a NUL-terminated device name.
        let dev = unsafe { libc::ioctl(g, VFIO_GROUP_GET_DEVICE_FD as _, name.as_ptr()) };
        if dev < 0 {
            return Err(format!("VFIO_GROUP_GET_DEVICE_FD {gname} {uuid}: {}", Errno::last()));
        }
        Ok(VfioDevice {
            // SAFETY: a fresh fd that nothing else owns.
            device: unsafe { OwnedFd::from_raw_fd(dev) },
            _iommufd: None,
            _group: Some(group),
            _container: Some(container),
            desc: format!("{uuid} via {gname} + container (type1 {})", if iommu == VFIO_TYPE1V2_IOMMU { "v2" } else { "v1" }),
        })
    }

    /// `/dev/vfio/devices/vfioX` of an mdev, from its `vfio-dev/` sysfs directory.
    pub fn cdev_path(uuid: &str) -> Result<PathBuf, String> {
        let dir = mdev_sysfs(uuid).join("vfio-dev");
        let ent = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("vfio"))
            .ok_or_else(|| format!("{}: no vfioX entry", dir.display()))?;
        Ok(Path::new("/dev/vfio/devices").join(ent.file_name()))
    }

    fn open_cdev(uuid: &str) -> Result<VfioDevice, String> {
        let cdev = Self::cdev_path(uuid)?;
        let name = cdev.display();
        let device = open_rw(&cdev)?;
        let iommufd = open_rw(Path::new("/dev/iommu"))?;
        let d = device.as_raw_fd();
        let mut bind = vfio_device_bind_iommufd {
            argsz: std::mem::size_of::<vfio_device_bind_iommufd>() as u32,
            iommufd: iommufd.as_raw_fd(),
            ..Default::default()
        }
        .to_bytes();
        raw_ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, Some(&mut bind)).map_err(|e| format!("VFIO_DEVICE_BIND_IOMMUFD {name}: {e}"))?;
        let mut alloc = iommu_ioas_alloc { size: std::mem::size_of::<iommu_ioas_alloc>() as u32, ..Default::default() }.to_bytes();
        raw_ioctl(iommufd.as_raw_fd(), IOMMU_IOAS_ALLOC, Some(&mut alloc)).map_err(|e| format!("IOMMU_IOAS_ALLOC: {e}"))?;
        let ioas = iommu_ioas_alloc::from_bytes(&alloc).out_ioas_id;
        let mut att = vfio_device_attach_iommufd_pt {
            argsz: std::mem::size_of::<vfio_device_attach_iommufd_pt>() as u32,
            pt_id: ioas,
            ..Default::default()
        }
        .to_bytes();
        raw_ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, Some(&mut att))
            .map_err(|e| format!("VFIO_DEVICE_ATTACH_IOMMUFD_PT {name} (ioas {ioas}): {e}"))?;
        Ok(VfioDevice { desc: format!("{uuid} via {name} + /dev/iommu (ioas {ioas})"), device, _iommufd: Some(iommufd), _group: None, _container: None })
    }
}

impl Device for VfioDevice {
    fn ioctl(&self, req: u64, arg: Option<&mut [u8]>) -> Result<i32, Errno> {
        raw_ioctl(self.device.as_raw_fd(), req, arg)
    }
    fn pread(&self, buf: &mut [u8], pos: u64) -> Result<usize, Errno> {
        // SAFETY: `buf` is a valid writable buffer of buf.len() bytes.
        let n = unsafe { libc::pread(self.device.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len(), pos as libc::off_t) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }
    fn pwrite(&self, buf: &[u8], pos: u64) -> Result<usize, Errno> {
        // SAFETY: `buf` is a valid buffer of buf.len() bytes.
        let n = unsafe { libc::pwrite(self.device.as_raw_fd(), buf.as_ptr() as *const _, buf.len(), pos as libc::off_t) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }
}

/// A non-blocking eventfd.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> Result<EventFd, String> {
        // SAFETY: plain eventfd creation.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(format!("eventfd: {}", Errno::last()));
        }
        // SAFETY: a fresh fd that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
    /// Waits up to `ms` for the counter to become non-zero.
    pub fn wait(&self, ms: i32) -> bool {
        let mut p = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) > 0 }
    }
    /// Reads and clears the counter (0 when it was not signalled).
    pub fn take(&self) -> u64 {
        let mut v = 0u64;
        // SAFETY: reading the 8-byte eventfd counter into `v`.
        let n = unsafe { libc::read(self.fd(), &mut v as *mut u64 as *mut _, 8) };
        if n == 8 {
            v
        } else {
            0
        }
    }
    /// Adds to the counter (what the kernel's eventfd_signal does).
    pub fn signal(&self) {
        let v = 1u64;
        // SAFETY: writing an 8-byte counter increment.
        unsafe { libc::write(self.fd(), &v as *const u64 as *const _, 8) };
    }
}
