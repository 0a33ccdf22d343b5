// SPDX-License-Identifier: GPL-2.0
/* See helpers.h: thin C shims for what Rust cannot call directly. */
#include <linux/err.h>
#include <linux/iommu.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include "helpers.h"

struct vfio_device *gpuvm_helper_vfio_alloc(size_t size, struct device *dev,
					    const struct vfio_device_ops *ops, int *err)
{
	struct vfio_device *vdev = _vfio_alloc_device(size, dev, ops);

	if (IS_ERR(vdev)) {
		*err = PTR_ERR(vdev);
		return NULL;
	}
	*err = 0;
	return vdev;
}

void gpuvm_helper_vfio_put_device(struct vfio_device *vdev)
{
	vfio_put_device(vdev);
}

struct eventfd_ctx *gpuvm_helper_eventfd_get(int fd, int *err)
{
	struct eventfd_ctx *ctx = eventfd_ctx_fdget(fd);

	if (IS_ERR(ctx)) {
		*err = PTR_ERR(ctx);
		return NULL;
	}
	*err = 0;
	return ctx;
}

void gpuvm_helper_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx);
}

void gpuvm_helper_eventfd_put(struct eventfd_ctx *ctx)
{
	eventfd_ctx_put(ctx);
}

int gpuvm_helper_pin_page(struct vfio_device *vdev, u64 iova, bool write, u64 *phys)
{
	struct page *page;
	int ret = vfio_pin_pages(vdev, iova & PAGE_MASK, 1,
				 IOMMU_READ | (write ? IOMMU_WRITE : 0), &page);

	if (ret < 0)
		return ret;
	if (ret != 1)
		return -EFAULT;
	*phys = page_to_phys(page);
	return 0;
}

struct workqueue_struct *gpuvm_helper_alloc_ordered_wq(const char *name)
{
	return alloc_ordered_workqueue("%s", 0, name);
}

void gpuvm_helper_destroy_wq(struct workqueue_struct *wq)
{
	destroy_workqueue(wq);
}

void gpuvm_helper_vma_set_pfnmap(struct vm_area_struct *vma, const struct vm_operations_struct *ops,
				 void *priv)
{
	vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	vma->vm_ops = ops;
	vma->vm_private_data = priv;
}

void *gpuvm_helper_vmf_private(struct vm_fault *vmf)
{
	return vmf->vma->vm_private_data;
}

u64 gpuvm_helper_vmf_pgoff(struct vm_fault *vmf)
{
	return vmf->pgoff;
}

bool gpuvm_helper_vmf_write(struct vm_fault *vmf)
{
	return !!(vmf->flags & FAULT_FLAG_WRITE);
}

vm_fault_t gpuvm_helper_vmf_insert_pfn(struct vm_fault *vmf, unsigned long pfn)
{
	return vmf_insert_pfn(vmf->vma, vmf->address, pfn);
}

void gpuvm_helper_vfio_zap(struct vfio_device *vdev, u64 start, u64 len)
{
	unmap_mapping_range(vdev->inode->i_mapping, start, len, true);
}

int gpuvm_helper_region_add_sparse(struct vfio_info_cap *caps, u64 offset, u64 size)
{
	struct vfio_region_info_cap_sparse_mmap *sparse;
	size_t sz = struct_size(sparse, areas, 1);
	int ret;

	sparse = kzalloc(sz, GFP_KERNEL);
	if (!sparse)
		return -ENOMEM;
	sparse->header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
	sparse->header.version = 1;
	sparse->nr_areas = 1;
	sparse->areas[0].offset = offset;
	sparse->areas[0].size = size;
	ret = vfio_info_add_capability(caps, &sparse->header, sz);
	kfree(sparse);
	return ret;
}
