//! gpuvm's VFIO/mdev test client: drives a gpuvm vGPU through both VFIO paths (group +
//! container, cdev + iommufd) and checks it against the issue-6 kernel contract
//! ([`contract`]). The `gpuvm-vfio-test` binary is the command line; the VM tests
//! (selftests/vm/tests/vgpu-*.sh) call it.

pub mod bad_ioctl;
pub mod config;
pub mod contract;
pub mod device;
pub mod errno;
pub mod irqs;
pub mod lifecycle;
pub mod mdev;
pub mod report;
pub mod sys;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
