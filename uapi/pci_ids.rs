//! PCI identity of the GF100 parts gpuvm drives, and of the vGPU it presents.
//! Source: envytools `docs/hw/pciid.rst` (shared/docs/gf100-interface.md §1) and nouveau's
//! GF100 device list.

/// NVIDIA's PCI vendor id.
pub const VENDOR_NVIDIA: u16 = 0x10de;

/// GeForce GTX 480.
pub const GTX_480: u16 = 0x06c0;
/// GeForce GTX 465.
pub const GTX_465: u16 = 0x06c4;
/// GeForce GTX 480M.
pub const GTX_480M: u16 = 0x06ca;
/// GeForce GTX 480 (second id).
pub const GTX_480_B: u16 = 0x06cb;
/// GeForce GTX 470.
pub const GTX_470: u16 = 0x06cd;
/// Tesla C2050 / C2070.
pub const TESLA_C2050: u16 = 0x06d1;
/// Tesla M2070.
pub const TESLA_M2070: u16 = 0x06d2;
/// Quadro 6000: the card GPUvm ran on, and the identity every vGPU presents.
pub const QUADRO_6000: u16 = 0x06d8;
/// Quadro 5000.
pub const QUADRO_5000: u16 = 0x06d9;
/// Quadro 5000M.
pub const QUADRO_5000M: u16 = 0x06da;
/// Quadro 6000 (second id).
pub const QUADRO_6000_B: u16 = 0x06dc;
/// Quadro 4000.
pub const QUADRO_4000: u16 = 0x06dd;
/// Tesla T20 / M2050.
pub const TESLA_T20: u16 = 0x06de;
/// Tesla M2070-Q.
pub const TESLA_M2070_Q: u16 = 0x06df;

/// Every GF100 device id the host driver binds (the chipset is then confirmed from BOOT_0).
pub const GF100_DEVICE_IDS: [u16; 14] = [
    GTX_480, GTX_465, GTX_480M, GTX_480_B, GTX_470, TESLA_C2050, TESLA_M2070, QUADRO_6000,
    QUADRO_5000, QUADRO_5000M, QUADRO_6000_B, QUADRO_4000, TESLA_T20, TESLA_M2070_Q,
];

/// Revision of the Quadro 6000 GPUvm captured.
pub const QUADRO_6000_REVISION: u8 = 0xa3;
/// PCI class code: display controller, VGA compatible (base 0x03, sub 0x00, prog-if 0x00).
pub const CLASS_VGA: u32 = 0x03_0000;
/// Subsystem of the captured Quadro 6000.
pub const QUADRO_6000_SUBSYSTEM: (u16, u16) = (0x10de, 0x076f);

/// BAR0: registers, 32 MiB, 32-bit non-prefetchable.
pub const BAR0_SIZE: usize = 32 << 20;
/// BAR1: VRAM aperture through the BAR1 VM, 128 MiB, 64-bit prefetchable.
pub const BAR1_SIZE: u64 = 128 << 20;
/// BAR3: kernel-structure ("RAMIN") aperture through the BAR3 VM, 64 MiB, 64-bit prefetchable.
pub const BAR3_SIZE: u64 = 64 << 20;
