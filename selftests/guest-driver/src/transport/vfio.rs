//! VFIO transports: one device type, three ways of opening it.
//!
//! - **no-IOMMU** (vfio-pci with `enable_unsafe_noiommu_mode`, group `/dev/vfio/noiommu-N`):
//!   legacy group + container with `VFIO_NOIOMMU_IOMMU`; DMA addresses are the physical frames of
//!   mlocked memory, read from `/proc/self/pagemap`.
//! - **group + container with an IOMMU** (type1v2 or type1; mdev or vfio-pci): DMA addresses are
//!   IOVAs this process maps with `VFIO_IOMMU_MAP_DMA`.
//! - **cdev + iommufd** (`/dev/vfio/devices/vfioN` + `/dev/iommu`): DMA addresses are IOVAs
//!   mapped with `IOMMU_IOAS_MAP` at fixed addresses.
//!
//! BARs are mmapped where the region (or a sparse-mmap area of it) allows, and otherwise reached
//! with pread/pwrite on the device fd (an mdev traps BAR0 that way).

use gpuvm_vfio_uapi::*;
use super::{page_round, Bar, DmaBuf, IrqMode, Transport, PAGE};
use std::ffi::CString;
use std::fs;
use std::io::{self, Error, ErrorKind};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PCI configuration space: the command register and the bits the driver sets.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// First IOVA handed out for DMA buffers behind an IOMMU (below GF100's 40-bit PTE reach).
const IOVA_BASE: u64 = 1 << 32;
/// Bit 63 of a pagemap entry: page present; bits 0-54: the frame number.
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// Which way the device is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioPath {
    /// Choose: a no-IOMMU group if the device has one, else cdev + iommufd if both exist,
    /// else group + container.
    Auto,
    NoIommu,
    Group,
    Cdev,
}

impl std::str::FromStr for VfioPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => VfioPath::Auto,
            "noiommu" => VfioPath::NoIommu,
            "group" => VfioPath::Group,
            "cdev" => VfioPath::Cdev,
            _ => return Err(format!("unknown VFIO path '{s}' (auto|noiommu|group|cdev)")),
        })
    }
}

/// A device named by sysfs: a PCI function or an mdev.
#[derive(Clone, Debug)]
pub enum VfioTarget {
    Pci(String),
    Mdev(String),
}

impl VfioTarget {
    fn sysfs(&self) -> PathBuf {
        match self {
            VfioTarget::Pci(bdf) => Path::new("/sys/bus/pci/devices").join(bdf),
            VfioTarget::Mdev(uuid) => Path::new("/sys/bus/mdev/devices").join(uuid),
        }
    }
    fn name(&self) -> &str {
        match self {
            VfioTarget::Pci(s) | VfioTarget::Mdev(s) => s,
        }
    }
}

fn err(kind: ErrorKind, msg: String) -> Error {
    Error::new(kind, msg)
}

fn last_err(what: &str) -> Error {
    let e = Error::last_os_error();
    Error::new(e.kind(), format!("{what}: {e}"))
}

fn open_rw(path: &Path) -> io::Result<RawFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_err(&format!("open {}", path.display())));
    }
    Ok(fd)
}

/// ioctl with a pointer argument; errors carry the request's name.
fn ioctl_ptr<T>(fd: RawFd, req: u64, arg: &mut T, what: &str) -> io::Result<i32> {
    // SAFETY: `arg` is a repr(C) struct matching the kernel's layout for `req`.
    let r = unsafe { libc::ioctl(fd, req as _, arg as *mut T) };
    if r < 0 {
        return Err(last_err(what));
    }
    Ok(r)
}

fn ioctl_val(fd: RawFd, req: u64, val: u64, what: &str) -> io::Result<i32> {
    // SAFETY: requests taking an integer argument.
    let r = unsafe { libc::ioctl(fd, req as _, val as libc::c_ulong) };
    if r < 0 {
        return Err(last_err(what));
    }
    Ok(r)
}

/// One mmapped piece of a region: [off, off+len) of the region at `ptr`.
struct Window {
    off: u64,
    len: u64,
    ptr: *mut u8,
}

/// A BAR: its region (for pread/pwrite) and whatever parts of it are mmapped.
struct Region {
    info: vfio_region_info,
    maps: Vec<Window>,
}

impl Region {
    fn window(&self, off: u64, len: u64) -> Option<*mut u8> {
        self.maps
            .iter()
            .find(|w| off >= w.off && off + len <= w.off + w.len)
            // SAFETY: inside the mapping.
            .map(|w| unsafe { w.ptr.add((off - w.off) as usize) })
    }
}

/// How DMA addresses are produced.
enum DmaMode {
    /// Physical frames from /proc/self/pagemap.
    Pagemap,
    /// VFIO_IOMMU_MAP_DMA on the container.
    Type1 { container: RawFd },
    /// IOMMU_IOAS_MAP on an iommufd IOAS.
    Iommufd { iommufd: RawFd, ioas: u32 },
}

pub struct VfioTransport {
    desc: String,
    device: RawFd,
    /// Fds to close on drop (group, container, iommufd), in opening order.
    others: Vec<RawFd>,
    /// BAR0, BAR1, BAR3 in `Bar` order.
    regions: Vec<Region>,
    dma: DmaMode,
    next_iova: u64,
    irq_fd: RawFd,
    irq_mode: IrqMode,
}

// Raw pointers to mmapped BARs; the transport is used from one thread at a time.
unsafe impl Send for VfioTransport {}

fn group_number(target: &VfioTarget) -> io::Result<String> {
    let link = fs::read_link(target.sysfs().join("iommu_group"))
        .map_err(|e| err(e.kind(), format!("{}: no iommu_group ({e})", target.name())))?;
    Ok(link.file_name().unwrap().to_string_lossy().into_owned())
}

/// `/dev/vfio/devices/vfioN` for a device bound to a VFIO driver, if the cdev exists.
fn cdev_path(target: &VfioTarget) -> Option<PathBuf> {
    let dir = target.sysfs().join("vfio-dev");
    let ent = fs::read_dir(dir).ok()?.flatten().next()?;
    let p = Path::new("/dev/vfio/devices").join(ent.file_name());
    p.exists().then_some(p)
}

impl VfioTransport {
    pub fn open(target: VfioTarget, path: VfioPath) -> io::Result<Self> {
        let group = group_number(&target).ok();
        let noiommu_group = group
            .as_ref()
            .map(|g| Path::new("/dev/vfio").join(format!("noiommu-{g}")))
            .filter(|p| p.exists());
        let path = match path {
            VfioPath::Auto if noiommu_group.is_some() => VfioPath::NoIommu,
            VfioPath::Auto if cdev_path(&target).is_some() && Path::new("/dev/iommu").exists() => VfioPath::Cdev,
            VfioPath::Auto => VfioPath::Group,
            p => p,
        };
        let (device, others, dma, how) = match path {
            VfioPath::NoIommu => {
                let gp = noiommu_group.ok_or_else(|| {
                    err(ErrorKind::NotFound, format!("{}: no /dev/vfio/noiommu-N group", target.name()))
                })?;
                let (dev, fds) = Self::open_legacy(&target, &gp, VFIO_NOIOMMU_IOMMU)?;
                (dev, fds, DmaMode::Pagemap, format!("vfio noiommu {}", gp.display()))
            }
            VfioPath::Group => {
                let g = group.ok_or_else(|| err(ErrorKind::NotFound, format!("{}: no IOMMU group", target.name())))?;
                let gp = Path::new("/dev/vfio").join(&g);
                let (dev, fds) = Self::open_legacy(&target, &gp, VFIO_TYPE1V2_IOMMU)
                    .or_else(|_| Self::open_legacy(&target, &gp, VFIO_TYPE1_IOMMU))?;
                let container = fds[1];
                (dev, fds, DmaMode::Type1 { container }, format!("vfio group {} + container", gp.display()))
            }
            VfioPath::Cdev => {
                let cp = cdev_path(&target)
                    .ok_or_else(|| err(ErrorKind::NotFound, format!("{}: no VFIO cdev", target.name())))?;
                let (dev, iommufd, ioas) = Self::open_cdev(&cp)?;
                (dev, vec![iommufd], DmaMode::Iommufd { iommufd, ioas }, format!("vfio cdev {} + iommufd", cp.display()))
            }
            VfioPath::Auto => unreachable!(),
        };
        let mut t = VfioTransport {
            desc: format!("{} ({how})", target.name()),
            device,
            others,
            regions: Vec::new(),
            dma,
            next_iova: IOVA_BASE,
            irq_fd: -1,
            irq_mode: IrqMode::None,
        };
        // From here on Drop releases whatever was opened.
        for b in Bar::ALL {
            let r = Self::map_region(t.device, b.pci_index())?;
            t.regions.push(r);
        }
        t.enable_pci_command()?;
        Ok(t)
    }

    /// Legacy path: group → container → IOMMU type → device fd. Returns (device, [group, container]).
    fn open_legacy(target: &VfioTarget, group_path: &Path, iommu_type: u64) -> io::Result<(RawFd, Vec<RawFd>)> {
        let container = open_rw(Path::new("/dev/vfio/vfio"))?;
        let group = match open_rw(group_path) {
            Ok(g) => g,
            Err(e) => {
                close(container);
                return Err(e);
            }
        };
        let fds = vec![group, container];
        let res = (|| {
            if ioctl_val(container, VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION")? != VFIO_API_VERSION {
                return Err(err(ErrorKind::Unsupported, "VFIO API version mismatch".into()));
            }
            if ioctl_val(container, VFIO_CHECK_EXTENSION, iommu_type, "VFIO_CHECK_EXTENSION")? == 0 {
                return Err(err(ErrorKind::Unsupported, format!("container lacks IOMMU type {iommu_type}")));
            }
            let mut st = vfio_group_status { argsz: std::mem::size_of::<vfio_group_status>() as u32, flags: 0 };
            ioctl_ptr(group, VFIO_GROUP_GET_STATUS, &mut st, "VFIO_GROUP_GET_STATUS")?;
            if st.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
                return Err(err(ErrorKind::Other, format!("{}: group not viable", group_path.display())));
            }
            let mut c = container;
            ioctl_ptr(group, VFIO_GROUP_SET_CONTAINER, &mut c, "VFIO_GROUP_SET_CONTAINER")?;
            ioctl_val(container, VFIO_SET_IOMMU, iommu_type, "VFIO_SET_IOMMU")?;
            let name = CString::new(target.name()).unwrap();
            // SAFETY: the argument is a NUL-terminated device name.
            let dev = unsafe { libc::ioctl(group, VFIO_GROUP_GET_DEVICE_FD as _, name.as_ptr()) };
            if dev < 0 {
                return Err(last_err("VFIO_GROUP_GET_DEVICE_FD"));
            }
            Ok(dev)
        })();
        match res {
            Ok(dev) => Ok((dev, fds)),
            Err(e) => {
                fds.iter().for_each(|&f| close(f));
                Err(e)
            }
        }
    }

    /// cdev path: bind the device to a fresh iommufd, allocate an IOAS and attach to it.
    fn open_cdev(cdev: &Path) -> io::Result<(RawFd, RawFd, u32)> {
        let dev = open_rw(cdev)?;
        let iommufd = match open_rw(Path::new("/dev/iommu")) {
            Ok(f) => f,
            Err(e) => {
                close(dev);
                return Err(e);
            }
        };
        let res = (|| {
            let mut bind = vfio_device_bind_iommufd {
                argsz: std::mem::size_of::<vfio_device_bind_iommufd>() as u32,
                iommufd,
                ..Default::default()
            };
            ioctl_ptr(dev, VFIO_DEVICE_BIND_IOMMUFD, &mut bind, "VFIO_DEVICE_BIND_IOMMUFD")?;
            let mut alloc = iommu_ioas_alloc { size: std::mem::size_of::<iommu_ioas_alloc>() as u32, ..Default::default() };
            ioctl_ptr(iommufd, IOMMU_IOAS_ALLOC, &mut alloc, "IOMMU_IOAS_ALLOC")?;
            let mut att = vfio_device_attach_iommufd_pt {
                argsz: std::mem::size_of::<vfio_device_attach_iommufd_pt>() as u32,
                pt_id: alloc.out_ioas_id,
                ..Default::default()
            };
            ioctl_ptr(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut att, "VFIO_DEVICE_ATTACH_IOMMUFD_PT")?;
            Ok(alloc.out_ioas_id)
        })();
        match res {
            Ok(ioas) => Ok((dev, iommufd, ioas)),
            Err(e) => {
                close(dev);
                close(iommufd);
                Err(e)
            }
        }
    }

    fn region_info(device: RawFd, index: u32) -> io::Result<(vfio_region_info, Vec<u8>)> {
        let mut info = vfio_region_info { argsz: std::mem::size_of::<vfio_region_info>() as u32, index, ..Default::default() };
        ioctl_ptr(device, VFIO_DEVICE_GET_REGION_INFO, &mut info, "VFIO_DEVICE_GET_REGION_INFO")?;
        let want = info.argsz as usize;
        if info.flags & VFIO_REGION_INFO_FLAG_CAPS == 0 || want <= std::mem::size_of::<vfio_region_info>() {
            return Ok((info, Vec::new()));
        }
        // Capabilities follow: fetch again with room for them (u64 storage keeps alignment).
        let mut buf = vec![0u64; want.div_ceil(8)];
        let hdr = vfio_region_info { argsz: want as u32, index, ..Default::default() };
        // SAFETY: buf is at least sizeof(vfio_region_info) and 8-byte aligned.
        unsafe { std::ptr::write(buf.as_mut_ptr() as *mut vfio_region_info, hdr) };
        // SAFETY: the kernel fills at most argsz bytes.
        let r = unsafe { libc::ioctl(device, VFIO_DEVICE_GET_REGION_INFO as _, buf.as_mut_ptr()) };
        if r < 0 {
            return Err(last_err("VFIO_DEVICE_GET_REGION_INFO (caps)"));
        }
        // SAFETY: as above.
        let info = unsafe { std::ptr::read(buf.as_ptr() as *const vfio_region_info) };
        let bytes = buf.iter().flat_map(|w| w.to_le_bytes()).take(want).collect();
        Ok((info, bytes))
    }

    /// The sparse-mmap areas of a region, if it lists them.
    fn sparse_areas(info: &vfio_region_info, caps: &[u8]) -> Option<Vec<(u64, u64)>> {
        let rd32 = |o: usize| caps.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let rd64 = |o: usize| caps.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        let mut off = info.cap_offset as usize;
        while off != 0 {
            let id = rd32(off)? & 0xffff;
            let next = rd32(off + 4)? as usize;
            if id == VFIO_REGION_INFO_CAP_SPARSE_MMAP as u32 {
                let n = rd32(off + 8)? as usize;
                return (0..n).map(|i| Some((rd64(off + 16 + 16 * i)?, rd64(off + 24 + 16 * i)?))).collect();
            }
            off = next;
        }
        None
    }

    fn map_region(device: RawFd, index: u32) -> io::Result<Region> {
        let (info, caps) = Self::region_info(device, index)?;
        let mut maps = Vec::new();
        if info.flags & VFIO_REGION_INFO_FLAG_MMAP != 0 && info.size > 0 {
            let areas = Self::sparse_areas(&info, &caps).unwrap_or_else(|| vec![(0, info.size)]);
            for (off, len) in areas.into_iter().filter(|a| a.1 > 0) {
                // SAFETY: mapping a region of the device fd as VFIO advertises.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        device,
                        (info.offset + off) as libc::off_t,
                    )
                };
                if p != libc::MAP_FAILED {
                    maps.push(Window { off, len, ptr: p as *mut u8 });
                }
            }
        }
        Ok(Region { info, maps })
    }

    fn cfg_rw(&self, off: u64, data: &mut [u8], write: bool) -> io::Result<()> {
        let (info, _) = Self::region_info(self.device, VFIO_PCI_CONFIG_REGION_INDEX)?;
        let pos = (info.offset + off) as libc::off_t;
        // SAFETY: data is a valid buffer of data.len() bytes.
        let n = unsafe {
            if write {
                libc::pwrite(self.device, data.as_ptr() as *const _, data.len(), pos)
            } else {
                libc::pread(self.device, data.as_mut_ptr() as *mut _, data.len(), pos)
            }
        };
        if n != data.len() as isize {
            return Err(last_err("config space access"));
        }
        Ok(())
    }

    /// Memory decoding and bus mastering on.
    fn enable_pci_command(&mut self) -> io::Result<()> {
        let mut cmd = [0u8; 2];
        self.cfg_rw(PCI_COMMAND, &mut cmd, false)?;
        let v = u16::from_le_bytes(cmd) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        self.cfg_rw(PCI_COMMAND, &mut v.to_le_bytes(), true)
    }

    fn region_rw(&self, bar: Bar, off: u64, data: &mut [u8], write: bool) {
        let r = &self.regions[bar as usize];
        assert!(off + data.len() as u64 <= r.info.size, "{} access at {off:#x} beyond the BAR", bar.name());
        let pos = (r.info.offset + off) as libc::off_t;
        // SAFETY: data is a valid buffer.
        let n = unsafe {
            if write {
                libc::pwrite(self.device, data.as_ptr() as *const _, data.len(), pos)
            } else {
                libc::pread(self.device, data.as_mut_ptr() as *mut _, data.len(), pos)
            }
        };
        assert_eq!(n, data.len() as isize, "{} {} at {off:#x}: {}", bar.name(), if write { "write" } else { "read" }, Error::last_os_error());
    }

    fn set_irq(&self, index: u32, fd: Option<RawFd>, action: u32) -> bool {
        let mut s = vfio_irq_set_one {
            argsz: VFIO_IRQ_SET_HDR,
            flags: VFIO_IRQ_SET_DATA_NONE | action,
            index,
            start: 0,
            count: if action == VFIO_IRQ_SET_ACTION_UNMASK { 1 } else { 0 },
            fd: -1,
        };
        if let Some(fd) = fd {
            s.argsz = std::mem::size_of::<vfio_irq_set_one>() as u32;
            s.flags = VFIO_IRQ_SET_DATA_EVENTFD | action;
            s.count = 1;
            s.fd = fd;
        }
        ioctl_ptr(self.device, VFIO_DEVICE_SET_IRQS, &mut s, "VFIO_DEVICE_SET_IRQS").is_ok()
    }

    /// Physical address of each page of a locked mapping, from /proc/self/pagemap.
    fn pagemap(ptr: *mut u8, len: usize) -> io::Result<Vec<u64>> {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open("/proc/self/pagemap")?;
        (0..len / PAGE)
            .map(|i| {
                let va = ptr as usize + i * PAGE;
                let mut e = [0u8; 8];
                f.read_exact_at(&mut e, (va / PAGE * 8) as u64)?;
                let e = u64::from_le_bytes(e);
                let pfn = e & PAGEMAP_PFN_MASK;
                if e & PAGEMAP_PRESENT == 0 || pfn == 0 {
                    return Err(err(ErrorKind::PermissionDenied, "pagemap gives no frame (not root, or page absent)".into()));
                }
                Ok(pfn * PAGE as u64)
            })
            .collect()
    }
}

fn close(fd: RawFd) {
    // SAFETY: closing an fd this transport opened.
    unsafe { libc::close(fd) };
}

impl Transport for VfioTransport {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    fn bar_size(&self, bar: Bar) -> u64 {
        self.regions[bar as usize].info.size
    }

    fn rd32(&mut self, bar: Bar, off: u64) -> u32 {
        if let Some(p) = self.regions[bar as usize].window(off, 4) {
            // SAFETY: aligned MMIO inside the mapping.
            return unsafe { std::ptr::read_volatile(p as *const u32) };
        }
        let mut b = [0u8; 4];
        self.region_rw(bar, off, &mut b, false);
        u32::from_le_bytes(b)
    }

    fn wr32(&mut self, bar: Bar, off: u64, val: u32) {
        if let Some(p) = self.regions[bar as usize].window(off, 4) {
            // SAFETY: aligned MMIO inside the mapping.
            return unsafe { std::ptr::write_volatile(p as *mut u32, val) };
        }
        self.region_rw(bar, off, &mut val.to_le_bytes(), true);
    }

    fn write_block(&mut self, bar: Bar, off: u64, data: &[u8]) {
        if let Some(p) = self.regions[bar as usize].window(off, data.len() as u64) {
            for (i, w) in data.chunks_exact(4).enumerate() {
                // SAFETY: inside the mapping; 32-bit accesses only.
                unsafe { std::ptr::write_volatile((p as *mut u32).add(i), u32::from_le_bytes(w.try_into().unwrap())) };
            }
            return;
        }
        self.region_rw(bar, off, &mut data.to_vec(), true);
    }

    fn read_block(&mut self, bar: Bar, off: u64, data: &mut [u8]) {
        if let Some(p) = self.regions[bar as usize].window(off, data.len() as u64) {
            for (i, w) in data.chunks_exact_mut(4).enumerate() {
                // SAFETY: inside the mapping; 32-bit accesses only.
                w.copy_from_slice(&unsafe { std::ptr::read_volatile((p as *const u32).add(i)) }.to_le_bytes());
            }
            return;
        }
        self.region_rw(bar, off, data, false);
    }

    fn dma_alloc(&mut self, len: usize) -> io::Result<DmaBuf> {
        let len = page_round(len);
        // SAFETY: a fresh anonymous mapping, locked and populated so frames stay put.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err("mmap DMA buffer (locked)"));
        }
        let ptr = p as *mut u8;
        let unmap = || {
            // SAFETY: the mapping made above.
            unsafe { libc::munmap(p, len) };
        };
        let iova = self.next_iova;
        let res = match self.dma {
            DmaMode::Pagemap => Self::pagemap(ptr, len),
            DmaMode::Type1 { container } => {
                let mut m = vfio_iommu_type1_dma_map {
                    argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
                    flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                    vaddr: ptr as u64,
                    iova,
                    size: len as u64,
                };
                ioctl_ptr(container, VFIO_IOMMU_MAP_DMA, &mut m, "VFIO_IOMMU_MAP_DMA")
                    .map(|_| (0..len / PAGE).map(|i| iova + (i * PAGE) as u64).collect())
            }
            DmaMode::Iommufd { iommufd, ioas } => {
                let mut m = iommu_ioas_map {
                    size: std::mem::size_of::<iommu_ioas_map>() as u32,
                    flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id: ioas,
                    user_va: ptr as u64,
                    length: len as u64,
                    iova,
                    ..Default::default()
                };
                ioctl_ptr(iommufd, IOMMU_IOAS_MAP, &mut m, "IOMMU_IOAS_MAP")
                    .map(|_| (0..len / PAGE).map(|i| iova + (i * PAGE) as u64).collect())
            }
        };
        match res {
            Ok(pages) => {
                if !matches!(self.dma, DmaMode::Pagemap) {
                    self.next_iova += len as u64;
                }
                Ok(DmaBuf { ptr, len, pages, handle: iova })
            }
            Err(e) => {
                unmap();
                Err(e)
            }
        }
    }

    fn dma_free(&mut self, buf: DmaBuf) {
        match self.dma {
            DmaMode::Pagemap => {}
            DmaMode::Type1 { container } => {
                let mut u = vfio_iommu_type1_dma_unmap {
                    argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
                    flags: 0,
                    iova: buf.handle,
                    size: buf.len as u64,
                };
                let _ = ioctl_ptr(container, VFIO_IOMMU_UNMAP_DMA, &mut u, "VFIO_IOMMU_UNMAP_DMA");
            }
            DmaMode::Iommufd { iommufd, ioas } => {
                let mut u = iommu_ioas_unmap {
                    size: std::mem::size_of::<iommu_ioas_unmap>() as u32,
                    ioas_id: ioas,
                    iova: buf.handle,
                    length: buf.len as u64,
                };
                let _ = ioctl_ptr(iommufd, IOMMU_IOAS_UNMAP, &mut u, "IOMMU_IOAS_UNMAP");
            }
        }
        // SAFETY: the mapping made in dma_alloc.
        unsafe { libc::munmap(buf.ptr as *mut _, buf.len) };
    }

    fn irq_enable(&mut self) -> IrqMode {
        if self.irq_fd < 0 {
            // SAFETY: plain eventfd creation.
            self.irq_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if self.irq_fd < 0 {
                return IrqMode::None;
            }
        }
        self.irq_mode = if self.set_irq(VFIO_PCI_MSI_IRQ_INDEX, Some(self.irq_fd), VFIO_IRQ_SET_ACTION_TRIGGER) {
            IrqMode::Msi
        } else if self.set_irq(VFIO_PCI_INTX_IRQ_INDEX, Some(self.irq_fd), VFIO_IRQ_SET_ACTION_TRIGGER) {
            IrqMode::Intx
        } else {
            IrqMode::None
        };
        self.irq_mode
    }

    fn irq_wait(&mut self, timeout: Duration) -> bool {
        if self.irq_fd < 0 {
            return false;
        }
        let mut p = libc::pollfd { fd: self.irq_fd, events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
            return false;
        }
        let mut v = 0u64;
        // SAFETY: reading the 8-byte eventfd counter.
        unsafe { libc::read(self.irq_fd, &mut v as *mut u64 as *mut _, 8) };
        v > 0
    }

    fn irq_rearm(&mut self) {
        if self.irq_mode == IrqMode::Intx {
            self.set_irq(VFIO_PCI_INTX_IRQ_INDEX, None, VFIO_IRQ_SET_ACTION_UNMASK);
        }
    }

    fn reset(&mut self) -> io::Result<()> {
        ioctl_val(self.device, VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET").map(|_| ())
    }

    fn irq_disable(&mut self) {
        let index = match self.irq_mode {
            IrqMode::Msi => VFIO_PCI_MSI_IRQ_INDEX,
            IrqMode::Intx => VFIO_PCI_INTX_IRQ_INDEX,
            _ => return,
        };
        self.set_irq(index, None, VFIO_IRQ_SET_ACTION_TRIGGER);
        self.irq_mode = IrqMode::None;
    }
}

impl Drop for VfioTransport {
    fn drop(&mut self) {
        self.irq_disable();
        for r in &self.regions {
            for w in &r.maps {
                // SAFETY: mappings made in map_region.
                unsafe { libc::munmap(w.ptr as *mut _, w.len as usize) };
            }
        }
        if self.irq_fd >= 0 {
            close(self.irq_fd);
        }
        close(self.device);
        for &f in &self.others {
            close(f);
        }
    }
}
