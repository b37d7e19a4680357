// Package vmtest boots the microVM image (make vm-image) under QEMU for the
// end-to-end tests and benchmarks that run the relay against a real guest:
// agentd as the VM's init, reached through a virtio-serial port on QEMU's
// chardev socket.
//
// The tests run only with RELAY_VM_TESTS=1 (make vm-test), after the race
// suite rather than beside it: a TCG guest and the race detector on two
// cores starve each other's timing. They boot one VM for the whole package.
package vmtest
