//! A userspace model of an NVIDIA GF100 (Quadro 6000, PCI 10de:06d8): the hardware gpuvm
//! runs on. It implements the subset in `shared/docs/gf100-interface.md`, with the register
//! and format declarations of `uapi/` (crate `gpuvm_uapi`).
//!
//! # In-process API (stable)
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gf100_model::gpuvm_uapi::gf100::pmc;
//! use gf100_model::{Bar, Gpu, HostMemory, ModelConfig};
//!
//! let gpu = Gpu::new(ModelConfig { vram_bytes: 256 << 20, ..ModelConfig::default() }).unwrap();
//! assert_eq!(gpu.bar_read32(Bar::Bar0, pmc::Boot0::OFFSET as u64), pmc::BOOT_0_QUADRO_6000);
//! gpu.bar_write32(Bar::Bar0, pmc::ENABLE as u64, pmc::ENABLE_ALL);
//! // System memory the GPU can reach at bus address 0x1_0000_0000 (sysmem PTEs/targets):
//! let sys = Arc::new(HostMemory::new("sysmem", 1 << 20).unwrap());
//! gpu.dma_map(0x1_0000_0000, sys.clone()).unwrap();
//! sys.write32(0, 42); // the driver side reads/writes the same bytes
//! // Interrupts: wait for the line, or install a notifier (MSI-like edges + levels).
//! let asserted = gpu.irq_wait(Duration::from_millis(1));
//! println!("{:?} irq={asserted}", gpu.counters());
//! gpu.shutdown(); // also on drop
//! ```
//!
//! - [`Gpu::new`] creates VRAM (memfd, sparse, zero) and starts the PBDMA/engine threads.
//! - [`Gpu::bar_read32`]/[`Gpu::bar_write32`]/[`Gpu::bar_read`]/[`Gpu::bar_write`]: BAR0
//!   registers (32-bit), BAR1/BAR3 windows (any size, translated through the BAR VMs).
//! - [`Gpu::config_read`]/[`Gpu::config_write`]: PCI config space (BAR sizing, MSI).
//! - [`Gpu::dma_map`]/[`Gpu::dma_unmap`]: host memory at bus addresses.
//! - [`Gpu::irq_wait`], [`Gpu::irq_line`], [`Gpu::set_irq_notifier`]: the interrupt output.
//! - [`Gpu::counters`]: activity counters ([`CountersSnapshot::to_json`]).
//! - [`Gpu::reset`], [`Gpu::shutdown`].
//!
//! The vfio-user server (`gf100-model` binary, [`server`]) wraps exactly this object.
//!
//! # Model choices
//!
//! - **BAR1/BAR3 are trapped windows** served through the model's MMU (each access is
//!   translated through the BAR VM at VA = BAR offset, faults included). The server exposes
//!   them without mmap so that every access is seen (doorbells, page-table changes); a
//!   mediator may remap pages itself. Direct VRAM mode (0x1704 bit 31 = 0) maps offset = VRAM
//!   address.
//! - Strictness: unknown registers read `0xbad00100` and writes are dropped (counted in
//!   `bar0_unknown`); registers of a unit disabled in PMC_ENABLE read `0xbad0da00`; a failed
//!   BAR1/BAR3 access raises a VM fault (reads return `0xbad0ac00`), a failed PRAMIN read
//!   returns `0xbad0ac00`. Interrupt enables and PMC_ENABLE reset to 0. System memory is
//!   reachable only while PCI bus mastering is on (on at creation for in-process users; the
//!   server starts with it off, as a real device does).
//! - Engines (M2MF, copy, compute) execute on PBDMA worker threads (`pbdma_threads`),
//!   asynchronously to MMIO; each engine serves one channel at a time, different engines run
//!   in parallel; PFIFO time-slices channels round-robin (`ModelConfig::timeslice`).
//! - The other uncertainty choices are documented in `uapi/gf100.rs` ("Choice") and in the
//!   module docs of [`mmu`] and `pfifo`.

pub mod bus;
pub mod counters;
mod engines;
mod gpu;
mod kernels;
pub mod mem;
pub mod mmu;
mod pfifo;
pub mod server;

pub use bus::{Aperture, PhysAddr};
pub use counters::{Counters, CountersSnapshot};
pub use gpu::{Bar, Gpu, IrqNotifier, ModelConfig};
pub use gpuvm_uapi;
pub use mem::HostMemory;
