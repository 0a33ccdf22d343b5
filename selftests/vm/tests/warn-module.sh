# Only for the harness self-test: a module whose init triggers a kernel WARN.
insmod /lib/modules/gpuvm_warn_test.ko
rmmod gpuvm_warn_test
