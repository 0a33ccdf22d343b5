// SPDX-License-Identifier: GPL-2.0
//! The PCI configuration space a vGPU presents: a Quadro 6000 (10de:06d8 rev a3) with its
//! type's BAR1/BAR3 sizes, the PM and MSI capabilities, and the BAR sizing protocol.
//!
//! Every byte has a value and a mask of guest-writable bits; a write changes only writable
//! bits, which is all the BAR sizing protocol needs (writing all-ones reads back the size mask
//! because the low bits are not writable). Identity registers are read-only.

use crate::gf100::pci;

/// Bytes of configuration space a vGPU exposes (conventional PCI).
pub const CONFIG_SIZE: usize = 256;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const REVISION: usize = 0x08;
const CLASS: usize = 0x09;
const SUBSYSTEM_VENDOR: usize = 0x2c;
const SUBSYSTEM_DEVICE: usize = 0x2e;
const CAP_PTR: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;

/// Command register bits the guest may set: memory space, bus master, INTx disable. The vGPU
/// has no I/O BAR, so I/O space stays off.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Bus master enable.
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// INTx disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const COMMAND_WRITABLE: u16 = COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
const STATUS_CAP_LIST: u16 = 1 << 4;
const STATUS_INTERRUPT: u16 = 1 << 3;

const CAP_ID_PM: u8 = 0x01;
const CAP_ID_MSI: u8 = 0x05;
const PM_VERSION_3: u16 = 0x0003;
const PM_CTRL_STATE_MASK: u8 = 0x03;
const MSI_CTRL_64BIT: u16 = 1 << 7;
const MSI_CTRL_ENABLE: u8 = 1 << 0;
const MSI_ADDRESS_LO: usize = pci::CAP_MSI + 4;
const MSI_ADDRESS_HI: usize = pci::CAP_MSI + 8;
const MSI_DATA: usize = pci::CAP_MSI + 12;

/// Memory BAR flag bits: 64-bit, prefetchable.
pub const BAR_MEM64_PREFETCH: u32 = 0x0000_000c;

/// The emulated configuration space of one vGPU.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    writable: [u8; CONFIG_SIZE],
}

impl ConfigSpace {
    /// Power-on state for a vGPU whose BAR1 and BAR3 have the given sizes (powers of two,
    /// below 4 GiB). BAR0 is always the GF100's 32 MiB.
    pub fn new(bar1_size: u64, bar3_size: u64) -> ConfigSpace {
        let mut c = ConfigSpace { bytes: [0; CONFIG_SIZE], writable: [0; CONFIG_SIZE] };
        c.put16(0x00, pci::VENDOR_NVIDIA);
        c.put16(0x02, pci::DEVICE_QUADRO_6000);
        c.put16(STATUS, STATUS_CAP_LIST);
        c.bytes[REVISION] = pci::REVISION;
        c.bytes[CLASS..CLASS + 3].copy_from_slice(&pci::CLASS_CODE.to_le_bytes()[..3]);
        c.put16(SUBSYSTEM_VENDOR, pci::SUBSYSTEM_VENDOR);
        c.put16(SUBSYSTEM_DEVICE, pci::SUBSYSTEM_DEVICE);
        c.bytes[CAP_PTR] = pci::CAP_PM as u8;
        c.bytes[INTERRUPT_PIN] = 1;
        c.set_writable(COMMAND, &COMMAND_WRITABLE.to_le_bytes());
        c.set_writable(INTERRUPT_LINE, &[0xff]);

        // BAR0: 32-bit non-prefetchable memory; the address bits above the size are writable.
        c.set_writable(pci::CFG_BAR0, &size_mask(pci::BAR0_SIZE).to_le_bytes());
        for (lo, size) in [(pci::CFG_BAR1_LO, bar1_size), (pci::CFG_BAR3_LO, bar3_size)] {
            c.put32(lo, BAR_MEM64_PREFETCH);
            c.set_writable(lo, &size_mask(size).to_le_bytes());
            c.set_writable(lo + 4, &[0xff; 4]);
        }

        c.bytes[pci::CAP_PM] = CAP_ID_PM;
        c.bytes[pci::CAP_PM + 1] = pci::CAP_MSI as u8;
        c.put16(pci::CAP_PM + 2, PM_VERSION_3);
        c.set_writable(pci::CAP_PM + 4, &[PM_CTRL_STATE_MASK]);
        c.bytes[pci::CAP_MSI] = CAP_ID_MSI;
        c.bytes[pci::CAP_MSI + 1] = 0;
        c.put16(pci::CAP_MSI + 2, MSI_CTRL_64BIT);
        c.set_writable(pci::CAP_MSI + 2, &[MSI_CTRL_ENABLE]);
        c.set_writable(MSI_ADDRESS_LO, &[0xfc, 0xff, 0xff, 0xff]);
        c.set_writable(MSI_ADDRESS_HI, &[0xff; 4]);
        c.set_writable(MSI_DATA, &[0xff, 0xff]);
        c
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn set_writable(&mut self, off: usize, mask: &[u8]) {
        self.writable[off..off + mask.len()].copy_from_slice(mask);
    }

    fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    /// Reads `buf.len()` bytes at `off`; `false` (nothing read) if the range is outside.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        match range(off, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.bytes[r]);
                true
            }
            None => false,
        }
    }

    /// Writes `data` at `off`, changing only guest-writable bits; `false` if outside.
    pub fn write(&mut self, off: u64, data: &[u8]) -> bool {
        let Some(r) = range(off, data.len()) else { return false };
        for (o, b) in r.zip(data) {
            let m = self.writable[o];
            self.bytes[o] = (self.bytes[o] & !m) | (b & m);
        }
        true
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.get16(COMMAND)
    }

    /// Whether the guest enabled MSI.
    pub fn msi_enabled(&self) -> bool {
        self.bytes[pci::CAP_MSI + 2] & MSI_CTRL_ENABLE != 0
    }

    /// Whether the guest disabled INTx in the command register.
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Reflects the INTx line in the status register's interrupt bit.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let st = self.get16(STATUS);
        self.put16(STATUS, if asserted { st | STATUS_INTERRUPT } else { st & !STATUS_INTERRUPT });
    }
}

/// Writable address bits of a memory BAR of `size` bytes (a power of two below 4 GiB).
fn size_mask(size: u64) -> u32 {
    !(size.saturating_sub(1) as u32) & !0xf
}

fn range(off: u64, len: usize) -> Option<core::ops::Range<usize>> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(len)?;
    (end <= CONFIG_SIZE).then_some(start..end)
}
