# The lud workload on a gpuvm-2 vGPU: the unchanged guest driver, full virtualization
# (trapped BARs, shadow channels and page tables), results checked against the CPU reference.
. /tests/lib.sh
vgpu_workload 2 lud
