//! PCI device ids of the GF100 parts the host driver binds. The identity a vGPU presents
//! (vendor, revision, class, BAR sizes) is in `gf100::pci`.
//! Source: envytools `docs/hw/pciid.rst` (shared/docs/gf100-interface.md §1) and nouveau's
//! GF100 device list.

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
/// Quadro 6000: the card GPUvm ran on (`gf100::pci::DEVICE_QUADRO_6000`).
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
