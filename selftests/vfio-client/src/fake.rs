//! An in-process vGPU that follows the issue-6 contract to the letter (host unit tests only),
//! with switchable deviations ([`Quirk`]) so that the tests can show each check catching one.

use crate::contract::*;
use crate::device::Device;
use crate::errno::Errno;
use crate::mdev::Attrs;
use crate::sys::*;
use std::cell::{Cell, RefCell};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quirk {
    VendorWritable,
    Bar0AnySize,
    ResetKeepsCommand,
    MsiFireSignalsReq,
    GetInfoIgnoresArgsz,
    SetIrqsIgnoresStart,
    /// An access straddling the end of a region transfers the part inside (vfio-pci style).
    ShortAtEnd,
    /// An access straddling the end of a region claims to transfer all of it.
    PastEnd,
    NoResetCounter,
    UnknownIoctlEinval,
    Bar1WrongSize,
}

pub struct FakeVgpu {
    shape: Shape,
    quirks: Vec<Quirk>,
    cfg: RefCell<[u8; 256]>,
    wmask: [u8; 256],
    defaults: [u8; 256],
    irq_fds: RefCell<[i32; 5]>,
    resets: Cell<u64>,
    traps: Cell<u64>,
}

fn put(a: &mut [u8; 256], off: u64, size: usize, val: u32) {
    a[off as usize..off as usize + size].copy_from_slice(&val.to_le_bytes()[..size]);
}

impl FakeVgpu {
    pub fn new(shape: Shape, quirks: &[Quirk]) -> FakeVgpu {
        let mut c = [0u8; 256];
        let mut w = [0u8; 256];
        let bar1 = if quirks.contains(&Quirk::Bar1WrongSize) { 2 * shape.region_size(1) } else { shape.region_size(1) };
        put(&mut c, CFG_VENDOR, 4, VENDOR_DEVICE);
        put(&mut c, CFG_STATUS, 2, STATUS_CAP_LIST);
        put(&mut c, CFG_REVISION, 4, REVISION_CLASS);
        put(&mut c, CFG_SUBSYSTEM, 4, SUBSYSTEM);
        put(&mut c, CFG_CAP_PTR, 1, CAP_PM as u32);
        put(&mut c, CFG_INT_PIN, 1, 1);
        put(&mut c, CFG_BAR1_LO, 4, BAR_64_PREF);
        put(&mut c, CFG_BAR3_LO, 4, BAR_64_PREF);
        put(&mut c, CAP_PM, 2, CAP_ID_PM | (CAP_MSI as u32) << 8);
        put(&mut c, CAP_MSI, 2, CAP_ID_MSI);
        put(&mut c, MSI_CTRL, 2, MSI_CTRL_64BIT);
        put(&mut w, CFG_COMMAND, 2, COMMAND_WRITABLE);
        put(&mut w, CFG_BAR0, 4, bar0_readback(u32::MAX));
        put(&mut w, CFG_BAR1_LO, 4, bar64_lo_readback(bar1, u32::MAX) & !BAR_64_PREF);
        put(&mut w, CFG_BAR1_HI, 4, u32::MAX);
        put(&mut w, CFG_BAR3_LO, 4, bar64_lo_readback(shape.region_size(3), u32::MAX) & !BAR_64_PREF);
        put(&mut w, CFG_BAR3_HI, 4, u32::MAX);
        put(&mut w, MSI_CTRL, 2, MSI_CTRL_ENABLE);
        put(&mut w, MSI_ADDR_LO, 4, 0xffff_fffc);
        put(&mut w, MSI_ADDR_HI, 4, u32::MAX);
        put(&mut w, MSI_DATA, 2, 0xffff);
        if quirks.contains(&Quirk::VendorWritable) {
            put(&mut w, CFG_VENDOR, 4, u32::MAX);
        }
        FakeVgpu {
            shape,
            quirks: quirks.to_vec(),
            cfg: RefCell::new(c),
            wmask: w,
            defaults: c,
            irq_fds: RefCell::new([-1; 5]),
            resets: Cell::new(0),
            traps: Cell::new(0),
        }
    }

    fn has(&self, q: Quirk) -> bool {
        self.quirks.contains(&q)
    }

    fn region_size(&self, index: u32) -> u64 {
        if index == 1 && self.has(Quirk::Bar1WrongSize) {
            return 2 * self.shape.region_size(1);
        }
        self.shape.region_size(index)
    }

    /// The region and offset of an access, or EINVAL.
    fn locate(&self, pos: u64, len: usize) -> Result<(u32, u64), Errno> {
        let index = (pos >> VFIO_PCI_OFFSET_SHIFT) as u32;
        let off = pos & ((1 << VFIO_PCI_OFFSET_SHIFT) - 1);
        let size = if index < NUM_REGIONS { self.region_size(index) } else { 0 };
        if size == 0 || off + len as u64 > size {
            if off < size && (self.has(Quirk::ShortAtEnd) || self.has(Quirk::PastEnd)) {
                return Ok((index, off));
            }
            return Err(Errno::EINVAL);
        }
        match index {
            VFIO_PCI_BAR0_REGION_INDEX if (len != 4 || !off.is_multiple_of(4)) && !self.has(Quirk::Bar0AnySize) => Err(Errno::EINVAL),
            VFIO_PCI_CONFIG_REGION_INDEX if ![1, 2, 4].contains(&len) => Err(Errno::EINVAL),
            _ => Ok((index, off)),
        }
    }

    /// How many bytes of an access at `off` a read/write reports.
    fn transferred(&self, index: u32, off: u64, len: usize) -> usize {
        if self.has(Quirk::PastEnd) {
            len
        } else {
            len.min((self.region_size(index) - off) as usize)
        }
    }

    fn signal(&self, index: u32) {
        let fd = self.irq_fds.borrow()[index as usize];
        if fd >= 0 {
            let v = 1u64;
            // SAFETY: writing an 8-byte increment to an eventfd the test installed.
            unsafe { libc::write(fd, &v as *const u64 as *const _, 8) };
        }
    }

    fn set_irqs(&self, b: &[u8]) -> Result<(), Errno> {
        if b.len() < IRQ_SET_MINSZ as usize {
            return Err(Errno::EFAULT);
        }
        let h = vfio_irq_set::from_bytes(b);
        let num = IRQS.get(h.index as usize).map_or(0, |i| i.0);
        let start_ok = self.has(Quirk::SetIrqsIgnoresStart) || (h.start < num && h.start as u64 + h.count as u64 <= num as u64);
        if h.argsz < IRQ_SET_MINSZ
            || h.index >= NUM_IRQS
            || h.count >= u32::MAX - h.start
            || h.flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
            || !start_ok
        {
            return Err(Errno::EINVAL);
        }
        let size = match h.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return Err(Errno::EINVAL),
        };
        if ((h.argsz - IRQ_SET_MINSZ) as u64) < h.count as u64 * size {
            return Err(Errno::EINVAL);
        }
        let action = h.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if action != VFIO_IRQ_SET_ACTION_TRIGGER {
            return if h.index == VFIO_PCI_INTX_IRQ_INDEX { Ok(()) } else { Err(Errno::EINVAL) };
        }
        match (size, h.count) {
            (4, 1) => {
                let fd = i32::from_ne_bytes(b[20..24].try_into().map_err(|_| Errno::EFAULT)?);
                self.irq_fds.borrow_mut()[h.index as usize] = fd;
            }
            (0, 0) => self.irq_fds.borrow_mut()[h.index as usize] = -1,
            (0, 1) => {
                self.signal(h.index);
                if h.index == VFIO_PCI_MSI_IRQ_INDEX && self.has(Quirk::MsiFireSignalsReq) {
                    self.signal(VFIO_PCI_REQ_IRQ_INDEX);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }
}

impl Device for FakeVgpu {
    fn ioctl(&self, req: u64, arg: Option<&mut [u8]>) -> Result<i32, Errno> {
        let Some(b) = arg else {
            return if req == VFIO_DEVICE_RESET {
                if !self.has(Quirk::NoResetCounter) {
                    self.resets.set(self.resets.get() + 1);
                }
                let cmd = self.cfg.borrow()[CFG_COMMAND as usize];
                *self.cfg.borrow_mut() = self.defaults;
                if self.has(Quirk::ResetKeepsCommand) {
                    self.cfg.borrow_mut()[CFG_COMMAND as usize] = cmd;
                }
                Ok(0)
            } else {
                Err(Errno::EFAULT)
            };
        };
        let argsz = u32::from_le_bytes(b[..4].try_into().unwrap());
        match req {
            VFIO_DEVICE_GET_INFO => {
                if argsz < DEVICE_INFO_MINSZ && !self.has(Quirk::GetInfoIgnoresArgsz) {
                    return Err(Errno::EINVAL);
                }
                let i = vfio_device_info { argsz, flags: DEVICE_FLAGS, num_regions: NUM_REGIONS, num_irqs: NUM_IRQS, ..Default::default() };
                b[..24].copy_from_slice(&i.to_bytes());
            }
            VFIO_DEVICE_GET_REGION_INFO => {
                let mut i = vfio_region_info::from_bytes(b);
                if argsz < REGION_INFO_MINSZ || i.index >= NUM_REGIONS {
                    return Err(Errno::EINVAL);
                }
                i.size = self.region_size(i.index);
                i.offset = region_offset(i.index);
                i.flags = if i.size > 0 { RW } else { 0 };
                b[..32].copy_from_slice(&i.to_bytes());
            }
            VFIO_DEVICE_GET_IRQ_INFO => {
                let mut i = vfio_irq_info::from_bytes(b);
                if argsz < IRQ_INFO_MINSZ || i.index >= NUM_IRQS {
                    return Err(Errno::EINVAL);
                }
                (i.count, i.flags) = IRQS[i.index as usize];
                b[..16].copy_from_slice(&i.to_bytes());
            }
            VFIO_DEVICE_SET_IRQS => self.set_irqs(b)?,
            _ if self.has(Quirk::UnknownIoctlEinval) => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENOTTY),
        }
        Ok(0)
    }

    fn pread(&self, buf: &mut [u8], pos: u64) -> Result<usize, Errno> {
        let (index, off) = self.locate(pos, buf.len())?;
        let n = self.transferred(index, off, buf.len());
        buf.fill(0);
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                let m = n.min(CONFIG_SIZE as usize - off as usize);
                buf[..m].copy_from_slice(&self.cfg.borrow()[off as usize..off as usize + m]);
                Ok(n)
            }
            VFIO_PCI_BAR0_REGION_INDEX => {
                self.traps.set(self.traps.get() + 1);
                if off == 0 && buf.len() >= 4 {
                    buf[..4].copy_from_slice(&BOOT_0.to_le_bytes());
                }
                Ok(n)
            }
            _ => Ok(n),
        }
    }

    fn pwrite(&self, buf: &[u8], pos: u64) -> Result<usize, Errno> {
        let (index, off) = self.locate(pos, buf.len())?;
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            let mut c = self.cfg.borrow_mut();
            for (i, &v) in buf.iter().enumerate().take(CONFIG_SIZE as usize - off as usize) {
                let o = off as usize + i;
                c[o] = (c[o] & !self.wmask[o]) | (v & self.wmask[o]);
            }
        } else if index == VFIO_PCI_BAR0_REGION_INDEX {
            self.traps.set(self.traps.get() + 1);
        }
        Ok(self.transferred(index, off, buf.len()))
    }
}

impl Attrs for FakeVgpu {
    fn attr(&self, name: &str) -> Result<String, String> {
        match name {
            "resets" => Ok(self.resets.get().to_string()),
            "mmio_traps" => Ok(self.traps.get().to_string()),
            _ => Err(format!("no attribute {name}")),
        }
    }
}
