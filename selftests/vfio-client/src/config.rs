//! `config-space`: device/region/IRQ info, the PCI config space a vGPU presents (identity,
//! capabilities, command register, BAR sizing, MSI), RESET, and the BOOT_0 trap.

use crate::contract::*;
use crate::device::{Device, DeviceExt, EventFd};
use crate::mdev::Attrs;
use crate::report::Report;
use crate::sys::*;

/// GET_INFO, every region's info and every IRQ index's info.
pub fn check_info(dev: &dyn Device, shape: Shape, r: &mut Report) {
    if let Some(info) = r.ok("VFIO_DEVICE_GET_INFO", dev.get_info()) {
        r.hex("GET_INFO flags (PCI|RESET)", info.flags, DEVICE_FLAGS);
        r.eq("GET_INFO num_regions", info.num_regions, NUM_REGIONS);
        r.eq("GET_INFO num_irqs", info.num_irqs, NUM_IRQS);
    }
    for index in 0..NUM_REGIONS {
        let name = REGION_NAMES[index as usize];
        let Some(ri) = r.ok(&format!("GET_REGION_INFO {index} ({name})"), dev.region_info(index)) else { continue };
        let size = shape.region_size(index);
        r.eq(&format!("region {index} ({name}) index"), ri.index, index);
        r.hex(&format!("region {index} ({name}) size"), ri.size, size);
        r.hex(&format!("region {index} ({name}) offset"), ri.offset, region_offset(index));
        // BAR1/BAR3 may one day be mmappable; nothing else is.
        let optional = if index == VFIO_PCI_BAR1_REGION_INDEX || index == VFIO_PCI_BAR3_REGION_INDEX {
            VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS
        } else {
            0
        };
        let want = if size == 0 { 0 } else { RW };
        r.check(ri.flags & !optional == want, || {
            format!("region {index} ({name}) flags: got {:#x}, want {want:#x}{}", ri.flags, if optional != 0 { " (+MMAP/CAPS allowed)" } else { "" })
        });
    }
    for index in 0..NUM_IRQS {
        let name = IRQ_NAMES[index as usize];
        let Some(ii) = r.ok(&format!("GET_IRQ_INFO {index} ({name})"), dev.irq_info(index)) else { continue };
        let (count, flags) = IRQS[index as usize];
        r.eq(&format!("irq {index} ({name}) index"), ii.index, index);
        r.eq(&format!("irq {index} ({name}) count"), ii.count, count);
        if count > 0 {
            r.hex(&format!("irq {index} ({name}) flags"), ii.flags, flags);
        }
    }
}

/// Reads config space at `off`; records a failure and gives None when the read fails.
fn rd(dev: &dyn Device, r: &mut Report, off: u64, size: usize) -> Option<u32> {
    r.ok(&format!("config read {size}@{off:#x}"), dev.cfg_read(off, size))
}

fn wr(dev: &dyn Device, r: &mut Report, off: u64, size: usize, val: u32) -> bool {
    r.ok(&format!("config write {size}@{off:#x} = {val:#x}"), dev.cfg_write(off, size, val)).is_some()
}

/// Expects config register `off` (size bytes) to read `want`.
fn expect(dev: &dyn Device, r: &mut Report, what: &str, off: u64, size: usize, want: u32) {
    if let Some(v) = rd(dev, r, off, size) {
        r.hex(&format!("{what} (config {size}@{off:#x})"), v, want);
    }
}

/// Writes then reads back.
fn write_expect(dev: &dyn Device, r: &mut Report, what: &str, off: u64, size: usize, val: u32, want: u32) {
    if wr(dev, r, off, size, val) {
        expect(dev, r, &format!("{what}: after writing {val:#x}"), off, size, want);
    }
}

/// The registers RESET restores: command 0, BARs unassigned, MSI disabled.
fn expect_defaults(dev: &dyn Device, r: &mut Report, when: &str) {
    expect(dev, r, &format!("{when}: command"), CFG_COMMAND, 2, 0);
    expect(dev, r, &format!("{when}: BAR0"), CFG_BAR0, 4, 0);
    expect(dev, r, &format!("{when}: BAR1 low"), CFG_BAR1_LO, 4, BAR_64_PREF);
    expect(dev, r, &format!("{when}: BAR1 high"), CFG_BAR1_HI, 4, 0);
    expect(dev, r, &format!("{when}: BAR3 low"), CFG_BAR3_LO, 4, BAR_64_PREF);
    expect(dev, r, &format!("{when}: BAR3 high"), CFG_BAR3_HI, 4, 0);
    if let Some(ctrl) = rd(dev, r, MSI_CTRL, 2) {
        r.check(ctrl & MSI_CTRL_ENABLE == 0, || format!("{when}: MSI control {ctrl:#x} has the enable bit set"));
    }
}

fn reset(dev: &dyn Device, attrs: &dyn Attrs, r: &mut Report, when: &str) {
    let before = r.ok("sysfs resets counter", attrs.counter("resets"));
    if r.ok(&format!("VFIO_DEVICE_RESET ({when})"), dev.reset()).is_none() {
        return;
    }
    if let (Some(b), Some(a)) = (before, r.ok("sysfs resets counter", attrs.counter("resets"))) {
        r.eq(&format!("sysfs resets counter after VFIO_DEVICE_RESET ({when})"), a, b + 1);
    }
}

pub fn check_config(dev: &dyn Device, shape: Shape, attrs: &dyn Attrs, r: &mut Report) {
    // Start from the reset state whatever an earlier user left behind.
    reset(dev, attrs, r, "at start");
    expect_defaults(dev, r, "after reset");

    // Identity.
    expect(dev, r, "vendor/device", CFG_VENDOR, 4, VENDOR_DEVICE);
    expect(dev, r, "revision/class", CFG_REVISION, 4, REVISION_CLASS);
    expect(dev, r, "subsystem vendor/device", CFG_SUBSYSTEM, 4, SUBSYSTEM);
    expect(dev, r, "header type", CFG_HEADER_TYPE, 1, 0);
    expect(dev, r, "interrupt pin (INTA)", CFG_INT_PIN, 1, 1);
    expect(dev, r, "capability pointer", CFG_CAP_PTR, 1, CAP_PM as u32);
    if let Some(st) = rd(dev, r, CFG_STATUS, 2) {
        r.check(st & STATUS_CAP_LIST != 0, || format!("status {st:#x} lacks the capability-list bit 0x10"));
    }
    expect(dev, r, "BAR5", CFG_BAR5, 4, 0);
    expect(dev, r, "expansion ROM", CFG_ROM, 4, 0);

    // Every dword equals its bytes and its words: 1-, 2- and 4-byte reads all work everywhere.
    for off in (0..CONFIG_SIZE).step_by(4) {
        let Some(d) = rd(dev, r, off, 4) else { break };
        let bytes: Option<Vec<u32>> = (0..4).map(|i| dev.cfg_read(off + i, 1).ok()).collect();
        let words: Option<Vec<u32>> = (0..2).map(|i| dev.cfg_read(off + 2 * i, 2).ok()).collect();
        let (Some(b), Some(w)) = (bytes, words) else {
            r.fail(format!("config 1- or 2-byte read inside dword {off:#x} failed"));
            break;
        };
        let from_bytes = b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24;
        let from_words = w[0] | w[1] << 16;
        if !r.check(from_bytes == d && from_words == d, || {
            format!("config dword {off:#x} = {d:#x} but bytes give {from_bytes:#x} and words {from_words:#x}")
        }) {
            break;
        }
    }

    // Capability list: PM at 0x60 → MSI at 0x68 → end.
    let mut caps = Vec::new();
    let mut ptr = rd(dev, r, CFG_CAP_PTR, 1).unwrap_or(0) as u64;
    while ptr != 0 && caps.len() < 8 {
        let (Some(id), Some(next)) = (rd(dev, r, ptr, 1), rd(dev, r, ptr + 1, 1)) else { break };
        caps.push((ptr, id));
        ptr = next as u64;
    }
    r.eq("capability list (offset, id)", caps, vec![(CAP_PM, CAP_ID_PM), (CAP_MSI, CAP_ID_MSI)]);
    if let Some(ctrl) = rd(dev, r, MSI_CTRL, 2) {
        r.check(ctrl & MSI_CTRL_64BIT != 0, || format!("MSI control {ctrl:#x}: not 64-bit address capable"));
        r.eq("MSI control: multiple message capable (1 vector)", ctrl & MSI_CTRL_MMC, 0);
    }

    // Read-only identity.
    write_expect(dev, r, "vendor/device (read-only)", CFG_VENDOR, 4, 0xffff_ffff, VENDOR_DEVICE);
    write_expect(dev, r, "device id (read-only, 2-byte write)", CFG_VENDOR + 2, 2, 0x1234, VENDOR_DEVICE >> 16);
    write_expect(dev, r, "revision/class (read-only)", CFG_REVISION, 4, 0xffff_ffff, REVISION_CLASS);

    // Command register: memory, bus master and INTx disable are writable, nothing else.
    write_expect(dev, r, "command", CFG_COMMAND, 2, 0xffff, COMMAND_WRITABLE);
    write_expect(dev, r, "command", CFG_COMMAND, 2, COMMAND_MEMORY, COMMAND_MEMORY);
    write_expect(dev, r, "command", CFG_COMMAND, 2, 0, 0);
    if wr(dev, r, CFG_COMMAND + 1, 1, COMMAND_INTX_DISABLE >> 8) {
        expect(dev, r, "command after a 1-byte write of 0x04 to 0x05", CFG_COMMAND, 2, COMMAND_INTX_DISABLE);
    }
    write_expect(dev, r, "command", CFG_COMMAND, 2, 0, 0);

    // BAR sizing: all-ones gives the size mask, an address reads back aligned with the flags.
    write_expect(dev, r, "BAR0 sizing", CFG_BAR0, 4, 0xffff_ffff, bar0_readback(0xffff_ffff));
    write_expect(dev, r, "BAR0 address", CFG_BAR0, 4, 0xe123_4567, bar0_readback(0xe123_4567));
    write_expect(dev, r, "BAR0 address", CFG_BAR0, 4, 0xe000_0000, 0xe000_0000);
    for (name, lo, hi, index, addr) in [
        ("BAR1", CFG_BAR1_LO, CFG_BAR1_HI, VFIO_PCI_BAR1_REGION_INDEX, 0xd123_4567u32),
        ("BAR3", CFG_BAR3_LO, CFG_BAR3_HI, VFIO_PCI_BAR3_REGION_INDEX, 0xc765_4321u32),
    ] {
        let size = shape.region_size(index);
        write_expect(dev, r, &format!("{name} low sizing"), lo, 4, 0xffff_ffff, bar64_lo_readback(size, 0xffff_ffff));
        write_expect(dev, r, &format!("{name} high sizing"), hi, 4, 0xffff_ffff, 0xffff_ffff);
        write_expect(dev, r, &format!("{name} low address"), lo, 4, addr, bar64_lo_readback(size, addr));
        write_expect(dev, r, &format!("{name} high address"), hi, 4, 0x0000_0001, 0x0000_0001);
    }
    write_expect(dev, r, "BAR5 sizing (absent BAR)", CFG_BAR5, 4, 0xffff_ffff, 0);
    write_expect(dev, r, "ROM sizing (absent ROM)", CFG_ROM, 4, 0xffff_ffff, 0);

    // MSI: enable bit, address and data writable.
    if let Some(ctrl) = rd(dev, r, MSI_CTRL, 2) {
        write_expect(dev, r, "MSI control enable", MSI_CTRL, 2, ctrl | MSI_CTRL_ENABLE, ctrl | MSI_CTRL_ENABLE);
    }
    write_expect(dev, r, "MSI address low", MSI_ADDR_LO, 4, 0xfee0_1000, 0xfee0_1000);
    write_expect(dev, r, "MSI address high", MSI_ADDR_HI, 4, 0x1234_5678, 0x1234_5678);
    write_expect(dev, r, "MSI data", MSI_DATA, 2, 0x4321, 0x4321);
    write_expect(dev, r, "command", CFG_COMMAND, 2, COMMAND_WRITABLE, COMMAND_WRITABLE);

    // RESET brings back the defaults.
    reset(dev, attrs, r, "after programming");
    expect_defaults(dev, r, "after the second reset");
    expect(dev, r, "vendor/device after reset", CFG_VENDOR, 4, VENDOR_DEVICE);
}

/// BAR0 offset 0 is PMC BOOT_0, and reading it is a trapped MMIO access.
pub fn check_boot0(dev: &dyn Device, attrs: &dyn Attrs, r: &mut Report) {
    let before = r.ok("sysfs mmio_traps counter", attrs.counter("mmio_traps"));
    if let Some(v) = r.ok("BAR0 read of PMC BOOT_0", dev.read_le(VFIO_PCI_BAR0_REGION_INDEX, 0, 4)) {
        r.hex("PMC BOOT_0 (BAR0 offset 0)", v, BOOT_0);
    }
    if let (Some(b), Some(a)) = (before, r.ok("sysfs mmio_traps counter", attrs.counter("mmio_traps"))) {
        r.check(a > b, || format!("sysfs mmio_traps did not grow over a BAR0 read: {b} → {a}"));
    }
}

/// Two vGPUs open at once keep separate state: programming or resetting one leaves the other's
/// config space and reset counter alone, and one's MSI does not reach the other's eventfd.
pub fn check_isolation(a: &dyn Device, a_attrs: &dyn Attrs, b: &dyn Device, b_attrs: &dyn Attrs, r: &mut Report) -> Result<(), String> {
    reset(a, a_attrs, r, "first vGPU");
    reset(b, b_attrs, r, "second vGPU");
    // Program the first.
    wr(a, r, CFG_COMMAND, 2, COMMAND_WRITABLE);
    wr(a, r, CFG_BAR0, 4, 0xe000_0000);
    if let Some(ctrl) = rd(a, r, MSI_CTRL, 2) {
        wr(a, r, MSI_CTRL, 2, ctrl | MSI_CTRL_ENABLE);
    }
    expect(a, r, "first vGPU command after programming", CFG_COMMAND, 2, COMMAND_WRITABLE);
    expect_defaults(b, r, "second vGPU while the first is programmed");
    // Reset the second: the first keeps its state and its reset count.
    let a_resets = r.ok("first vGPU resets counter", a_attrs.counter("resets"));
    reset(b, b_attrs, r, "second vGPU while the first is programmed");
    expect(a, r, "first vGPU command after the second's reset", CFG_COMMAND, 2, COMMAND_WRITABLE);
    expect(a, r, "first vGPU BAR0 after the second's reset", CFG_BAR0, 4, 0xe000_0000);
    if let (Some(before), Some(after)) = (a_resets, r.ok("first vGPU resets counter", a_attrs.counter("resets"))) {
        r.eq("first vGPU resets counter after the second's reset", after, before);
    }
    // MSI of one does not reach the other.
    let (ea, eb) = (EventFd::new()?, EventFd::new()?);
    r.ok("first vGPU MSI eventfd", a.set_eventfd(VFIO_PCI_MSI_IRQ_INDEX, ea.fd()));
    r.ok("second vGPU MSI eventfd", b.set_eventfd(VFIO_PCI_MSI_IRQ_INDEX, eb.fd()));
    r.ok("first vGPU MSI fire", a.fire(VFIO_PCI_MSI_IRQ_INDEX));
    ea.wait(2000);
    eb.wait(50);
    r.eq("first vGPU MSI eventfd after firing the first's MSI", ea.take(), 1);
    r.eq("second vGPU MSI eventfd after firing the first's MSI", eb.take(), 0);
    r.ok("first vGPU MSI teardown", a.teardown(VFIO_PCI_MSI_IRQ_INDEX));
    r.ok("second vGPU MSI teardown", b.teardown(VFIO_PCI_MSI_IRQ_INDEX));
    reset(a, a_attrs, r, "first vGPU at the end");
    Ok(())
}
