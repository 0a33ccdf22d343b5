# The demo's VM part: load gpuvm, show the GPUs and what the module found.
. /tests/lib.sh
load_gpuvm
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x10de ] || continue
  echo "PCI $(basename $d) $(cat $d/vendor):$(cat $d/device) class $(cat $d/class) driver: $(driver_of $(basename $d))"
done
dmesg | grep 'gpuvm ' | sed 's/^\[[^]]*\] //'
