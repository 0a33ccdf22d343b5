//! PCI configuration space of the Quadro 6000: identity, BAR sizing, PM and MSI capability.
//!
//! Writable: command, the BAR address bits (the size bits read back 0, so writing all-ones
//! and reading back gives the size), the interrupt line, PM control/status, and the MSI
//! control/address/data registers. Everything else is read-only.

use gpuvm_uapi::gf100::pci;

pub const CONFIG_SIZE: usize = 4096;
const COMMAND: usize = pci::CFG_COMMAND;
const STATUS: usize = pci::CFG_STATUS;
const CAP_PTR: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;

use pci::{COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY};
const COMMAND_WRITABLE: u16 =
    0x0001 | COMMAND_MEMORY | COMMAND_BUS_MASTER | 0x0040 | 0x0100 | COMMAND_INTX_DISABLE;
const STATUS_CAP_LIST: u16 = 1 << 4;
use pci::STATUS_INTERRUPT;

const PCI_CAP_ID_PM: u8 = 0x01;
const PCI_CAP_ID_MSI: u8 = 0x05;
/// MSI control: 64-bit address capable, one vector.
const MSI_CTRL_64BIT: u16 = 1 << 7;
const MSI_CTRL_ENABLE: u16 = 1 << 0;

/// BAR memory type bits: 64-bit prefetchable.
const BAR_MEM64_PREFETCH: u32 = 0x0000_000c;

pub struct ConfigSpace {
    bytes: [u8; CONFIG_SIZE],
    /// Writable-bits mask per byte.
    writable: [u8; CONFIG_SIZE],
}

impl Default for ConfigSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigSpace {
    pub fn new() -> ConfigSpace {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SIZE],
            writable: [0; CONFIG_SIZE],
        };
        c.put16(0x00, pci::VENDOR_NVIDIA);
        c.put16(0x02, pci::DEVICE_QUADRO_6000);
        c.put16(STATUS, STATUS_CAP_LIST);
        c.bytes[0x08] = pci::REVISION;
        c.bytes[0x09] = pci::CLASS_CODE as u8;
        c.bytes[0x0a] = (pci::CLASS_CODE >> 8) as u8;
        c.bytes[0x0b] = (pci::CLASS_CODE >> 16) as u8;
        c.put16(0x2c, pci::SUBSYSTEM_VENDOR);
        c.put16(0x2e, pci::SUBSYSTEM_DEVICE);
        c.bytes[CAP_PTR] = pci::CAP_PM as u8;
        c.bytes[INTERRUPT_PIN] = 1;
        c.set_writable(COMMAND, &COMMAND_WRITABLE.to_le_bytes());
        c.set_writable(INTERRUPT_LINE, &[0xff]);

        // BARs: address bits writable, size bits and type bits read-only.
        c.put32(pci::CFG_BAR0, 0);
        c.set_writable(pci::CFG_BAR0, &(!(pci::BAR0_SIZE as u32 - 1)).to_le_bytes());
        for (lo, size) in [
            (pci::CFG_BAR1_LO, pci::BAR1_SIZE),
            (pci::CFG_BAR3_LO, pci::BAR3_SIZE),
        ] {
            c.put32(lo, BAR_MEM64_PREFETCH);
            c.set_writable(lo, &(!(size as u32 - 1)).to_le_bytes());
            c.set_writable(lo + 4, &[0xff; 4]);
        }

        // PM capability (D0 only), then MSI (64-bit, 1 vector), end of list.
        c.bytes[pci::CAP_PM] = PCI_CAP_ID_PM;
        c.bytes[pci::CAP_PM + 1] = pci::CAP_MSI as u8;
        c.put16(pci::CAP_PM + 2, 0x0003); // version 3
        c.bytes[pci::CAP_MSI] = PCI_CAP_ID_MSI;
        c.bytes[pci::CAP_MSI + 1] = 0;
        c.put16(pci::CAP_MSI + 2, MSI_CTRL_64BIT);
        c.set_writable(pci::CAP_MSI + 2, &[MSI_CTRL_ENABLE as u8, 0]);
        c.set_writable(pci::CAP_MSI + 4, &[0xfc, 0xff, 0xff, 0xff]);
        c.set_writable(pci::CAP_MSI + 8, &[0xff; 4]);
        c.set_writable(pci::CAP_MSI + 12, &[0xff, 0xff]);
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

    /// Reads `buf.len()` bytes at `off`; bytes beyond the space read as 0.
    pub fn read(&self, off: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let o = off.saturating_add(i as u64);
            *b = if o < CONFIG_SIZE as u64 {
                self.bytes[o as usize]
            } else {
                0
            };
        }
    }

    /// Writes honouring the per-byte writable masks; writes beyond the space are dropped.
    pub fn write(&mut self, off: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let o = off.saturating_add(i as u64) as usize;
            if o < CONFIG_SIZE {
                let m = self.writable[o];
                self.bytes[o] = (self.bytes[o] & !m) | (b & m);
            }
        }
    }

    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    pub fn msi_enabled(&self) -> bool {
        self.bytes[pci::CAP_MSI + 2] & MSI_CTRL_ENABLE as u8 != 0
    }

    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// Mirrors the INTx line in the status register's interrupt bit.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let st = u16::from_le_bytes([self.bytes[STATUS], self.bytes[STATUS + 1]]);
        let st = if asserted {
            st | STATUS_INTERRUPT
        } else {
            st & !STATUS_INTERRUPT
        };
        self.put16(STATUS, st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd32(c: &ConfigSpace, off: u64) -> u32 {
        let mut b = [0; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_and_bar_sizing() {
        let mut c = ConfigSpace::new();
        assert_eq!(rd32(&c, 0), 0x06d8_10de);
        assert_eq!(rd32(&c, 8), 0x0300_00a3);
        for (off, size, flags) in [
            (pci::CFG_BAR0, pci::BAR0_SIZE, 0u32),
            (pci::CFG_BAR1_LO, pci::BAR1_SIZE, 0xc),
            (pci::CFG_BAR3_LO, pci::BAR3_SIZE, 0xc),
        ] {
            c.write(off as u64, &[0xff; 4]);
            let v = rd32(&c, off as u64);
            assert_eq!(v & 0xf, flags);
            assert_eq!(
                (!(v & !0xf)).wrapping_add(1) as u64,
                size,
                "BAR at {off:#x}"
            );
        }
        c.write(pci::CFG_BAR1_HI as u64, &[0xff; 4]);
        assert_eq!(rd32(&c, pci::CFG_BAR1_HI as u64), 0xffff_ffff);
        c.write(pci::CFG_BAR1_LO as u64, &0xe000_0000u32.to_le_bytes());
        assert_eq!(rd32(&c, pci::CFG_BAR1_LO as u64), 0xe000_000c);
        // Identity is read-only.
        c.write(0, &[0; 4]);
        assert_eq!(rd32(&c, 0), 0x06d8_10de);
        // Capability chain: PM -> MSI -> end.
        assert_eq!(rd32(&c, 0x34) & 0xff, 0x60);
        assert_eq!(rd32(&c, 0x60) & 0xffff, 0x6801);
        assert_eq!(rd32(&c, 0x68) & 0xffff, 0x0005);
        assert!(!c.msi_enabled());
        c.write(0x6a, &[1, 0]);
        assert!(c.msi_enabled());
    }
}
