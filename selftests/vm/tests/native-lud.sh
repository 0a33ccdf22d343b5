# The lud workload on the native baseline (model GPU through vfio-pci, no-IOMMU):
# results checked against the CPU reference by gpuvm-bench.
. /tests/lib.sh
native_workload lud
