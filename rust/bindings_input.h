/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of rust/gen_bindings.sh: the kernel headers the module needs beyond kernel::bindings.
 * ioctl numbers are function-like macros that bindgen cannot evaluate, so they are exposed as
 * constants here (the kernel's own RUST_CONST_HELPER trick) and renamed by the script.
 */
#include <linux/vfio.h>
#include <linux/mdev.h>
#include "helpers.h"

const unsigned int RUST_CONST_HELPER_VFIO_GET_API_VERSION = VFIO_GET_API_VERSION;
const unsigned int RUST_CONST_HELPER_VFIO_DEVICE_GET_INFO = VFIO_DEVICE_GET_INFO;
const unsigned int RUST_CONST_HELPER_VFIO_DEVICE_GET_REGION_INFO = VFIO_DEVICE_GET_REGION_INFO;
const unsigned int RUST_CONST_HELPER_VFIO_DEVICE_GET_IRQ_INFO = VFIO_DEVICE_GET_IRQ_INFO;
const unsigned int RUST_CONST_HELPER_VFIO_DEVICE_SET_IRQS = VFIO_DEVICE_SET_IRQS;
const unsigned int RUST_CONST_HELPER_VFIO_DEVICE_RESET = VFIO_DEVICE_RESET;
