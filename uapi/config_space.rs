// SPDX-License-Identifier: GPL-2.0
//! The PCI configuration space of a GF100 (Quadro 6000, 10de:06d8 rev a3): identity, BAR
//! sizing, INTx, and the PM and MSI capabilities (§1). One implementation serves the model,
//! which presents the whole card (4 KiB of PCIe space, also mirrored in BAR0 at 0x88000), and
//! the mediator, which presents each vGPU with conventional 256-byte space; what differs
//! between them is a [`Profile`] and the size `N`.
//!
//! Every byte has a value and a mask of software-writable bits. A write changes only writable
//! bits, which is all the BAR sizing protocol needs: writing all-ones reads back the size
//! mask, because the bits below the size and the type flags are not writable. Identity
//! registers are read-only. Nothing here panics on a guest's offset or length.

use crate::gf100::pci;

/// What distinguishes one presentation of the card from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// BAR1 (VRAM aperture) size: a power of two, at least 16 bytes.
    pub bar1_size: u64,
    /// BAR3 (RAMIN aperture) size: a power of two, at least 16 bytes.
    pub bar3_size: u64,
    /// COMMAND bits software may set.
    pub command_writable: u16,
    /// PM control/status bits software may set (the power-state field, or nothing).
    pub pm_ctrl_writable: u8,
}

impl Profile {
    /// The card as the model presents it: the Quadro 6000's BAR sizes (§1).
    ///
    /// **Choice:** COMMAND takes I/O space, parity-error response and SERR# enable besides
    /// memory space, bus mastering and INTx disable, as a PCIe function with an I/O BAR does
    /// (the card's BAR5); the model implements neither BAR5 nor error reporting, so the bits
    /// are stored only. PowerState is read-only: the card stays in D0 and an OS's D3hot
    /// request reads back D0 (Linux reports that and carries on).
    pub const CARD: Profile = Profile {
        bar1_size: pci::BAR1_SIZE,
        bar3_size: pci::BAR3_SIZE,
        command_writable: pci::COMMAND_IO
            | pci::COMMAND_MEMORY
            | pci::COMMAND_BUS_MASTER
            | pci::COMMAND_PARITY
            | pci::COMMAND_SERR
            | pci::COMMAND_INTX_DISABLE,
        pm_ctrl_writable: 0,
    };

    /// A vGPU with its type's BAR1 and BAR3 sizes.
    ///
    /// **Choice:** COMMAND takes only what a vGPU emulates (memory space, bus mastering, INTx
    /// disable; it has no I/O BAR, so I/O space stays off). PowerState stores what the guest
    /// writes; the vGPU behaves the same in every state.
    pub const fn vgpu(bar1_size: u64, bar3_size: u64) -> Profile {
        Profile {
            bar1_size,
            bar3_size,
            command_writable: pci::COMMAND_MEMORY
                | pci::COMMAND_BUS_MASTER
                | pci::COMMAND_INTX_DISABLE,
            pm_ctrl_writable: pci::PM_CTRL_STATE_MASK,
        }
    }
}

/// An emulated configuration space of `N` bytes (`pci::CFG_SIZE_PCI` or `pci::CFG_SIZE_PCIE`).
#[derive(Clone)]
pub struct ConfigSpace<const N: usize> {
    bytes: [u8; N],
    /// Software-writable bits of each byte.
    writable: [u8; N],
}

impl<const N: usize> ConfigSpace<N> {
    /// The header and both capabilities live in the first 256 bytes.
    const HOLDS_HEADER: () = assert!(N >= pci::CFG_SIZE_PCI);

    /// Power-on state.
    pub fn power_on(profile: &Profile) -> Self {
        let () = Self::HOLDS_HEADER;
        let mut c = ConfigSpace {
            bytes: [0; N],
            writable: [0; N],
        };
        c.put16(pci::CFG_VENDOR_ID, pci::VENDOR_NVIDIA);
        c.put16(pci::CFG_DEVICE_ID, pci::DEVICE_QUADRO_6000);
        c.put16(pci::CFG_STATUS, pci::STATUS_CAP_LIST);
        c.bytes[pci::CFG_REVISION] = pci::REVISION;
        c.bytes[pci::CFG_CLASS..pci::CFG_CLASS + pci::CFG_CLASS_LEN]
            .copy_from_slice(&pci::CLASS_CODE.to_le_bytes()[..pci::CFG_CLASS_LEN]);
        c.put16(pci::CFG_SUBSYSTEM_VENDOR, pci::SUBSYSTEM_VENDOR);
        c.put16(pci::CFG_SUBSYSTEM_DEVICE, pci::SUBSYSTEM_DEVICE);
        c.bytes[pci::CFG_CAP_PTR] = pci::CAP_PM as u8;
        c.bytes[pci::CFG_INTERRUPT_PIN] = pci::INTERRUPT_PIN_INTA;
        c.set_writable(pci::CFG_COMMAND, &profile.command_writable.to_le_bytes());
        c.set_writable(pci::CFG_INTERRUPT_LINE, &[u8::MAX]);

        // BAR0: 32-bit non-prefetchable memory. BAR1/BAR3: 64-bit prefetchable, so the
        // address bits above the size run on into the high register.
        c.set_writable(
            pci::CFG_BAR0,
            &(bar_mask(pci::BAR0_SIZE) as u32).to_le_bytes(),
        );
        for (lo, size) in [
            (pci::CFG_BAR1_LO, profile.bar1_size),
            (pci::CFG_BAR3_LO, profile.bar3_size),
        ] {
            c.put32(lo, pci::BAR_MEM64_PREFETCH);
            c.set_writable(lo, &bar_mask(size).to_le_bytes());
        }

        let pm = pci::CAP_PM;
        c.bytes[pm + pci::CAP_ID] = pci::CAP_ID_PM;
        c.bytes[pm + pci::CAP_NEXT] = pci::CAP_MSI as u8;
        c.put16(pm + pci::PM_CAPS, pci::PM_CAPS_VERSION_3);
        c.set_writable(pm + pci::PM_CTRL, &[profile.pm_ctrl_writable]);

        let msi = pci::CAP_MSI;
        c.bytes[msi + pci::CAP_ID] = pci::CAP_ID_MSI;
        c.put16(msi + pci::MSI_CTRL, pci::MSI_CTRL_64BIT);
        c.set_writable(msi + pci::MSI_CTRL, &pci::MSI_CTRL_ENABLE.to_le_bytes());
        c.set_writable(
            msi + pci::MSI_ADDRESS_LO,
            &pci::MSI_ADDRESS_LO_MASK.to_le_bytes(),
        );
        c.set_writable(msi + pci::MSI_ADDRESS_HI, &u32::MAX.to_le_bytes());
        c.set_writable(msi + pci::MSI_DATA, &u16::MAX.to_le_bytes());
        c
    }

    // Construction only: the offsets are the constants above, all inside the header.
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

    /// Reads `buf.len()` bytes at `off`: `false` if the range is not wholly inside, in which
    /// case the bytes inside are read and the rest read as 0.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = index::<N>(off, i).map_or(0, |o| self.bytes[o]);
        }
        range::<N>(off, buf.len()).is_some()
    }

    /// Writes `data` at `off`, changing only writable bits: `false` (nothing written) if the
    /// range is not wholly inside.
    pub fn write(&mut self, off: u64, data: &[u8]) -> bool {
        let Some(r) = range::<N>(off, data.len()) else {
            return false;
        };
        for (o, b) in r.zip(data) {
            let m = self.writable[o];
            self.bytes[o] = (self.bytes[o] & !m) | (b & m);
        }
        true
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.get16(pci::CFG_COMMAND)
    }

    /// Whether software enabled MSI.
    pub fn msi_enabled(&self) -> bool {
        self.get16(pci::CAP_MSI + pci::MSI_CTRL) & pci::MSI_CTRL_ENABLE != 0
    }

    /// Whether software disabled INTx in the command register.
    pub fn intx_disabled(&self) -> bool {
        self.command() & pci::COMMAND_INTX_DISABLE != 0
    }

    /// Reflects the INTx pin in the status register's interrupt bit.
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let st = self.get16(pci::CFG_STATUS);
        let st = if asserted {
            st | pci::STATUS_INTERRUPT
        } else {
            st & !pci::STATUS_INTERRUPT
        };
        self.put16(pci::CFG_STATUS, st);
    }
}

/// Writable address bits of a memory BAR of `size` bytes (a power of two), as the 64 bits of
/// a 64-bit BAR pair; a 32-bit BAR uses the low half. The type flags are never writable.
fn bar_mask(size: u64) -> u64 {
    !size.saturating_sub(1) & !u64::from(pci::BAR_FLAGS_MASK)
}

/// The byte index of `off + i`, if inside.
fn index<const N: usize>(off: u64, i: usize) -> Option<usize> {
    let o = usize::try_from(off).ok()?.checked_add(i)?;
    (o < N).then_some(o)
}

fn range<const N: usize>(off: u64, len: usize) -> Option<core::ops::Range<usize>> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(len)?;
    (end <= N).then_some(start..end)
}
