# One workload, checked element by element against its CPU reference by gpuvm-bench (a wrong
# result fails it). The parameter (the part of the test name after '@') says where:
#   native:WORKLOAD  the native baseline: the model GPU through vfio-pci, no-IOMMU;
#   vgpu:WORKLOAD    a gpuvm-2 vGPU: the unchanged guest driver under full virtualization
#                    (trapped BARs, shadow channels and page tables); its counters are printed.
# E.g. workload@native:hotspot, workload@vgpu:mmul (the Makefile lists all ten).
. /tests/lib.sh
case "$1" in
  native:?*) native_workload "${1#native:}" ;;
  vgpu:?*) vgpu_workload 2 "${1#vgpu:}" ;;
  *) fail "parameter '$1' is not native:WORKLOAD or vgpu:WORKLOAD (workload@native:hotspot)" ;;
esac
