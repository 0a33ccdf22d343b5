//! gpuvm's guest GPU driver: a userspace GF100 driver with a Gdev-like API, its transports
//! (VFIO with or without an IOMMU, and the in-process model), the workloads with CPU-reference
//! checking, and the `gpuvm-bench` runner.

pub mod alloc;
pub mod driver;
pub mod hostile;
pub mod record;
pub mod sched_load;
pub mod transport;
pub mod workloads;
