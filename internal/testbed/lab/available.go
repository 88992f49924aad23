package lab

import (
	"fmt"
	"os/exec"
)

// Available reports why the lab cannot run here, or nil. It checks local
// prerequisites only and never downloads: qemu, a static busybox, and
// either a cached kernel or the apt tooling and mirror to fetch one.
func Available(cacheDir string) error {
	if _, err := exec.LookPath(qemuBinary); err != nil {
		return fmt.Errorf("%s not found in PATH: install the qemu-system-x86 package", qemuBinary)
	}
	if _, err := findBusybox(); err != nil {
		return err
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if _, err := loadCachedKernel(cacheDir); err == nil {
		return nil
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("no kernel cached in %s and %s not found to download one", cacheDir, tool)
		}
	}
	if _, err := hostDebianArchive("/etc/apt", "/etc/os-release"); err != nil {
		return fmt.Errorf("no kernel cached in %s and none can be downloaded: %w", cacheDir, err)
	}
	return nil
}
