//! `bad-ioctl`: malformed requests fail with the contract's errno and leave the device working.

use crate::contract::*;
use crate::device::{Device, DeviceExt, EventFd};
use crate::errno::Errno;
use crate::report::Report;
use crate::sys::*;

const EINVAL: Errno = Errno::EINVAL;

fn set_irqs_cases(dev: &dyn Device, r: &mut Report, efd: i32) {
    let fd = efd.to_ne_bytes();
    let fd2 = [fd, fd].concat();
    let trig_efd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let trig_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let msi = VFIO_PCI_MSI_IRQ_INDEX;
    let hdr = |argsz, flags, index, start, count| vfio_irq_set { argsz, flags, index, start, count };
    let cases: Vec<(&str, vfio_irq_set, &[u8])> = vec![
        ("argsz 0", hdr(0, trig_none, msi, 0, 1), &[]),
        ("argsz 19 (< header)", hdr(IRQ_SET_MINSZ - 1, trig_none, msi, 0, 1), &[]),
        ("unknown flag bit 6", hdr(IRQ_SET_MINSZ, trig_none | 1 << 6, msi, 0, 1), &[]),
        ("flag bit 31", hdr(IRQ_SET_MINSZ, trig_none | 1 << 31, msi, 0, 1), &[]),
        ("no data type", hdr(IRQ_SET_MINSZ, VFIO_IRQ_SET_ACTION_TRIGGER, msi, 0, 1), &[]),
        ("DATA_NONE|DATA_EVENTFD", hdr(IRQ_SET_MINSZ + 4, trig_efd | VFIO_IRQ_SET_DATA_NONE, msi, 0, 1), &fd),
        ("DATA_BOOL|DATA_EVENTFD", hdr(IRQ_SET_MINSZ + 4, trig_efd | VFIO_IRQ_SET_DATA_BOOL, msi, 0, 1), &fd),
        ("index 5", hdr(IRQ_SET_MINSZ + 4, trig_efd, NUM_IRQS, 0, 1), &fd),
        ("index 0xffffffff", hdr(IRQ_SET_MINSZ + 4, trig_efd, u32::MAX, 0, 1), &fd),
        ("MSI start 1 (beyond 1 vector)", hdr(IRQ_SET_MINSZ + 4, trig_efd, msi, 1, 1), &fd),
        ("MSI start 0 count 2", hdr(IRQ_SET_MINSZ + 8, trig_efd, msi, 0, 2), &fd2),
        ("MSI start 0xffffffff count 2 (wraps)", hdr(IRQ_SET_MINSZ + 8, trig_efd, msi, u32::MAX, 2), &fd2),
        ("INTx count 0x40000000 with a 24-byte argsz", hdr(IRQ_SET_MINSZ + 4, trig_efd, VFIO_PCI_INTX_IRQ_INDEX, 0, 0x4000_0000), &fd),
        ("REQ start 0xffffffff count 1", hdr(IRQ_SET_MINSZ + 4, trig_efd, VFIO_PCI_REQ_IRQ_INDEX, u32::MAX, 1), &fd),
        ("MSI eventfd with no room for it (argsz 20)", hdr(IRQ_SET_MINSZ, trig_efd, msi, 0, 1), &fd),
        ("MSI-X eventfd (no vectors)", hdr(IRQ_SET_MINSZ + 4, trig_efd, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1), &fd),
    ];
    for (what, h, data) in cases {
        r.errno(&format!("SET_IRQS {what}"), dev.set_irqs_raw(h, data), EINVAL);
    }
}

/// Every access in `accesses` on region `index` must fail with EINVAL.
fn rejected(dev: &dyn Device, r: &mut Report, index: u32, accesses: &[(u64, usize)]) {
    let name = REGION_NAMES.get(index as usize).copied().unwrap_or("?");
    for &(off, len) in accesses {
        let mut buf = vec![0u8; len];
        r.errno(&format!("read {len}@{off:#x} of region {index} ({name})"), dev.region_read(index, off, &mut buf), EINVAL);
        r.errno(&format!("write {len}@{off:#x} of region {index} ({name})"), dev.region_write(index, off, &buf), EINVAL);
    }
}

/// An access at `off` of region `index` (of `size` bytes) that runs past its end may fail with
/// EINVAL or transfer the part inside (a short count, as vfio-pci does), never more.
fn straddling(dev: &dyn Device, r: &mut Report, index: u32, size: u64, off: u64, len: usize) {
    let name = REGION_NAMES[index as usize];
    let inside = (size - off) as usize;
    let mut buf = vec![0u8; len];
    let results = [("read", dev.region_read(index, off, &mut buf)), ("write", dev.region_write(index, off, &vec![0u8; len]))];
    for (what, res) in results {
        r.check(matches!(res, Err(Errno::EINVAL)) || matches!(res, Ok(n) if n <= inside), || {
            format!("{what} {len}@{off:#x} of region {index} ({name}) crossing its end at {size:#x}: {res:?}, want EINVAL or at most {inside} bytes")
        });
    }
}

pub fn check_bad_ioctls(dev: &dyn Device, shape: Shape, r: &mut Report) -> Result<(), String> {
    // argsz below each struct's minimum.
    for argsz in [0, DEVICE_INFO_MINSZ - 1] {
        r.errno(&format!("GET_INFO argsz {argsz}"), dev.get_info_argsz(argsz), EINVAL);
    }
    for argsz in [0, REGION_INFO_MINSZ - 1] {
        r.errno(&format!("GET_REGION_INFO argsz {argsz}"), dev.region_info_argsz(0, argsz), EINVAL);
    }
    for argsz in [0, IRQ_INFO_MINSZ - 1] {
        r.errno(&format!("GET_IRQ_INFO argsz {argsz}"), dev.irq_info_argsz(0, argsz), EINVAL);
    }
    // Indices out of range.
    for index in [NUM_REGIONS, 1000, u32::MAX] {
        r.errno(&format!("GET_REGION_INFO index {index:#x}"), dev.region_info(index), EINVAL);
    }
    for index in [NUM_IRQS, u32::MAX] {
        r.errno(&format!("GET_IRQ_INFO index {index:#x}"), dev.irq_info(index), EINVAL);
    }
    let efd = EventFd::new()?;
    set_irqs_cases(dev, r, efd.fd());
    r.eq("eventfd passed in rejected SET_IRQS calls stayed quiet", efd.take(), 0);

    // NULL argument pointers: any error will do, but an error it must be.
    for (name, req) in [
        ("GET_INFO", VFIO_DEVICE_GET_INFO),
        ("GET_REGION_INFO", VFIO_DEVICE_GET_REGION_INFO),
        ("GET_IRQ_INFO", VFIO_DEVICE_GET_IRQ_INFO),
        ("SET_IRQS", VFIO_DEVICE_SET_IRQS),
    ] {
        let res = dev.ioctl(req, None);
        r.check(res.is_err(), || format!("{name} with a NULL argument succeeded"));
    }

    // Unknown ioctls.
    let mut junk = [0u8; 64];
    r.errno("unknown ioctl _IO(';', 0xf0)", dev.ioctl(UNKNOWN_VFIO_IOCTL, Some(&mut junk)), Errno::ENOTTY);
    r.errno("foreign ioctl TCGETS", dev.ioctl(FOREIGN_IOCTL, Some(&mut junk)), Errno::ENOTTY);

    // BAR0 takes aligned 4-byte accesses only.
    rejected(dev, r, VFIO_PCI_BAR0_REGION_INDEX, &[(0, 1), (0, 2), (0, 8), (2, 4), (1, 4), (2, 2), (4, 3), (0, 16)]);
    // Beyond the end of every region, and straddling it.
    for index in [VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR1_REGION_INDEX, VFIO_PCI_BAR3_REGION_INDEX] {
        let size = shape.region_size(index);
        rejected(dev, r, index, &[(size, 4), (size + 4, 4), (2 * size, 4), ((1 << 40) - 4, 4)]);
    }
    rejected(dev, r, VFIO_PCI_CONFIG_REGION_INDEX, &[(CONFIG_SIZE, 1), (CONFIG_SIZE, 4), (4096, 4)]);
    straddling(dev, r, VFIO_PCI_CONFIG_REGION_INDEX, CONFIG_SIZE, CONFIG_SIZE - 2, 4);
    straddling(dev, r, VFIO_PCI_CONFIG_REGION_INDEX, CONFIG_SIZE, CONFIG_SIZE - 1, 2);
    for index in [VFIO_PCI_BAR1_REGION_INDEX, VFIO_PCI_BAR3_REGION_INDEX] {
        let size = shape.region_size(index);
        straddling(dev, r, index, size, size - 4, 8);
    }
    // Regions of size 0, and region indices beyond the last.
    for index in [2, 4, 5, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX, NUM_REGIONS, 0xff, 0x7f_ffff] {
        rejected(dev, r, index, &[(0, 4)]);
    }

    // The device still answers.
    if let Some(info) = r.ok("GET_INFO after the bad calls", dev.get_info()) {
        r.eq("num_regions after the bad calls", info.num_regions, NUM_REGIONS);
    }
    if let Some(v) = r.ok("BOOT_0 read after the bad calls", dev.read_le(VFIO_PCI_BAR0_REGION_INDEX, 0, 4)) {
        r.hex("BOOT_0 after the bad calls", v, BOOT_0);
    }
    if let Some(v) = r.ok("config read after the bad calls", dev.cfg_read(CFG_VENDOR, 4)) {
        r.hex("vendor/device after the bad calls", v, VENDOR_DEVICE);
    }
    Ok(())
}
