// SPDX-License-Identifier: GPL-2.0
/* See helpers.h: thin C shims for what Rust cannot call directly. */
#include <linux/err.h>
#include <linux/iommu.h>
#include <linux/mm.h>
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
