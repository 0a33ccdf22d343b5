// SPDX-License-Identifier: GPL-2.0
//! The PCI configuration space a vGPU presents: the card's (`uapi/config_space.rs`, which the
//! GF100 model presents too) in conventional 256-byte form, with the vGPU type's BAR1/BAR3
//! sizes and only the COMMAND bits a vGPU emulates ([`Profile::vgpu`]).

pub use crate::config_space::Profile;
pub use crate::gf100::pci::{
    BAR_MEM64_PREFETCH, COMMAND_BUS_MASTER, COMMAND_INTX_DISABLE, COMMAND_MEMORY,
};

/// Bytes of configuration space a vGPU exposes (conventional PCI).
pub const CONFIG_SIZE: usize = crate::gf100::pci::CFG_SIZE_PCI;

/// The emulated configuration space of one vGPU.
pub type ConfigSpace = crate::config_space::ConfigSpace<CONFIG_SIZE>;

impl ConfigSpace {
    /// Power-on state for a vGPU whose BAR1 and BAR3 have the given sizes (powers of two).
    /// BAR0 is always the GF100's 32 MiB.
    pub fn new(bar1_size: u64, bar3_size: u64) -> ConfigSpace {
        ConfigSpace::power_on(&Profile::vgpu(bar1_size, bar3_size))
    }
}
