// SPDX-License-Identifier: GPL-2.0
//! gpuvm: full GPU virtualization of an NVIDIA Fermi GF100 as an mdev/VFIO parent driver.
//!
//! This file is the crate root: the PCI driver that owns each GF100 it finds. Hardware facts
//! come from `uapi/` (shared with the GF100 model and the guest driver); FFI lives in `rust/`.

use gf100::pmc;
use kernel::{device::Core, io::Io, pci, prelude::*};

// uapi/ is the shared hardware contract; the module uses the part it needs.
#[path = "uapi/gf100.rs"]
#[allow(dead_code, unreachable_pub)]
mod gf100;
#[path = "uapi/pci_ids.rs"]
#[allow(dead_code, unreachable_pub)]
mod pci_ids;
#[path = "rust/bindings.rs"]
mod bindings;
#[path = "rust/vfio.rs"]
mod vfio;

module! {
    type: GpuvmModule,
    name: "gpuvm",
    authors: ["gpuvm developers"],
    description: "Full virtualization of NVIDIA Fermi GF100 GPUs as mdev/VFIO vGPUs",
    license: "GPL",
}

/// BAR0 (the register aperture) is 32 MiB on every GF100.
type Bar0<'bound> = pci::Bar<'bound, { gf100::pci::BAR0_SIZE as usize }>;

/// One physical GF100 owned by this driver.
struct GpuvmGpu<'bound> {
    pdev: &'bound pci::Device,
    _bar0: Bar0<'bound>,
    chipset: u32,
}

struct GpuvmPciDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <GpuvmPciDriver as pci::Driver>::IdInfo,
    [
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_465 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_480_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::GTX_470 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_C2050 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_5000M as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_6000_B as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::QUADRO_4000 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_T20 as u32), ()),
        (pci::DeviceId::from_id(pci::Vendor::NVIDIA, pci_ids::TESLA_M2070_Q as u32), ()),
    ]
);

impl pci::Driver for GpuvmPciDriver {
    type IdInfo = ();
    type Data<'bound> = GpuvmGpu<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pdev.enable_device_mem()?;
        pdev.set_master();
        let bar0 = pdev.iomap_region_sized::<{ gf100::pci::BAR0_SIZE as usize }>(0, c"gpuvm-bar0")?;
        let boot0 = bar0.read32(pmc::BOOT_0 as usize);
        let chipset = (boot0 >> pmc::BOOT_0_CHIPSET_SHIFT) & pmc::BOOT_0_CHIPSET_MASK;
        if chipset != pmc::CHIPSET_GF100 {
            dev_err!(
                pdev,
                "BOOT_0 {:#010x} reports chipset {:#x}, not GF100 ({:#x}): refusing\n",
                boot0,
                chipset,
                pmc::CHIPSET_GF100
            );
            return Err(ENODEV);
        }
        dev_info!(pdev, "GF100 chipset {:#x} (BOOT_0 {:#010x})\n", chipset, boot0);
        Ok(GpuvmGpu { pdev, _bar0: bar0, chipset })
    }
}

impl Drop for GpuvmGpu<'_> {
    fn drop(&mut self) {
        dev_info!(self.pdev, "released (chipset {:#x})\n", self.chipset);
    }
}

struct GpuvmModule {
    _pci: Pin<KBox<kernel::driver::Registration<pci::Adapter<GpuvmPciDriver>>>>,
}

impl kernel::Module for GpuvmModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let pci = KBox::pin_init(kernel::driver::Registration::new(c"gpuvm", module), GFP_KERNEL)?;
        Ok(GpuvmModule { _pci: pci })
    }
}
