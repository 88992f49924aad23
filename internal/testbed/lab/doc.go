// Package lab boots a Debian kernel with sched_ext under qemu (TCG, no KVM
// needed) from a generated initramfs, runs a command in it as root and
// brings back its exit status and the files it wrote under /out.
//
// The host kernel may lack sched_ext; every scheduler test and the
// "scx-slo lab" command go through this package instead. The kernel is
// fetched once with apt from the host's own Debian mirror into a private
// apt state under the cache directory (see DefaultCacheDir); nothing is
// installed on the host.
//
// Results never share the console: the guest writes its exit status and a
// tar of /out to two virtio-serial ports that qemu stores as files.
package lab
