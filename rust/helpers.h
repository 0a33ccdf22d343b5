/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers linked into gpuvm.ko (rust/helpers.c): static inlines and ERR_PTR-returning
 * functions that Rust cannot call directly. Read by bindgen through bindings_input.h.
 */
#ifndef GPUVM_RUST_HELPERS_H
#define GPUVM_RUST_HELPERS_H
#include <linux/eventfd.h>
#include <linux/vfio.h>
#include <linux/mdev.h>
#include <linux/workqueue.h>

/* _vfio_alloc_device(): NULL and *err on failure instead of an ERR_PTR. */
struct vfio_device *gpuvm_helper_vfio_alloc(size_t size, struct device *dev,
					    const struct vfio_device_ops *ops, int *err);
/* static inline vfio_put_device(). */
void gpuvm_helper_vfio_put_device(struct vfio_device *vdev);
/* eventfd_ctx_fdget(): NULL and *err on failure instead of an ERR_PTR. */
struct eventfd_ctx *gpuvm_helper_eventfd_get(int fd, int *err);
/* static inline eventfd_signal(). */
void gpuvm_helper_eventfd_signal(struct eventfd_ctx *ctx);
void gpuvm_helper_eventfd_put(struct eventfd_ctx *ctx);
/* Pins one page of the device's IOVA space: its physical address in *phys. */
int gpuvm_helper_pin_page(struct vfio_device *vdev, u64 iova, bool write, u64 *phys);
/* alloc_ordered_workqueue() is a variadic macro: one named ordered queue. */
struct workqueue_struct *gpuvm_helper_alloc_ordered_wq(const char *name);
/* destroy_workqueue(): waits for everything queued on it to finish. */
void gpuvm_helper_destroy_wq(struct workqueue_struct *wq);
#endif
