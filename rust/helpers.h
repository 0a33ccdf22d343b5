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

/*
 * BAR remapping (rust/vfio.rs): a VMA of the device file set up for PFN faults (VM_IO |
 * VM_PFNMAP, uncached, as vfio-pci does for BARs) with `ops` and `priv`.
 */
void gpuvm_helper_vma_set_pfnmap(struct vm_area_struct *vma, const struct vm_operations_struct *ops,
				 void *priv);
/* vmf->vma->vm_private_data, vmf->pgoff (file page offset) and whether the fault is a write. */
void *gpuvm_helper_vmf_private(struct vm_fault *vmf);
u64 gpuvm_helper_vmf_pgoff(struct vm_fault *vmf);
bool gpuvm_helper_vmf_write(struct vm_fault *vmf);
/* vmf_insert_pfn() at the faulting address. */
vm_fault_t gpuvm_helper_vmf_insert_pfn(struct vm_fault *vmf, unsigned long pfn);
/* Removes every user mapping of [start, start + len) of the device file (vfio-pci's zap). */
void gpuvm_helper_vfio_zap(struct vfio_device *vdev, u64 start, u64 len);
/* Adds a VFIO_REGION_INFO_CAP_SPARSE_MMAP capability with one area. */
int gpuvm_helper_region_add_sparse(struct vfio_info_cap *caps, u64 offset, u64 size);
#endif
