// Package cgroupfs finds the cgroup hierarchy scx-slo charges latency to and
// maps cgroup ids to paths. A cgroup's id, as BPF reads it from
// cgroup->kn->id, is the inode number of its directory (true on cgroup2 and
// on the v1 cpu hierarchy since Linux 5.5), so walking the directory tree
// and stat-ing each directory yields the id-to-path table.
package cgroupfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Hierarchy is one mounted cgroup hierarchy.
type Hierarchy struct {
	// Root is the directory the hierarchy is mounted on.
	Root string
	// V2 is true for cgroup2; false for the v1 hierarchy holding the cpu
	// controller.
	V2 bool
	// ID is the kernel's hierarchy id (0 for cgroup2), which the BPF side
	// compares on cgroup_rmdir.
	ID int
}

func (h Hierarchy) String() string {
	if h.V2 {
		return "cgroup2 at " + h.Root
	}
	return fmt.Sprintf("cgroup v1 cpu (hierarchy %d) at %s", h.ID, h.Root)
}

// Detect picks the hierarchy under mountRoot (normally /sys/fs/cgroup).
// mode is "auto", "v2" or "v1". auto prefers a unified cgroup2 mount (the
// normal case), then the v1 cpu hierarchy (where Kubernetes on cgroup v1
// puts pods), then a hybrid-mode cgroup2 at <mountRoot>/unified.
func Detect(mountRoot, mode string) (Hierarchy, error) {
	v2 := func(dir string) (Hierarchy, bool) {
		if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
			return Hierarchy{Root: dir, V2: true}, true
		}
		return Hierarchy{}, false
	}
	v1 := func() (Hierarchy, bool) {
		dir := filepath.Join(mountRoot, "cpu")
		if _, err := os.Stat(filepath.Join(dir, "cpu.shares")); err != nil {
			return Hierarchy{}, false
		}
		id, err := cpuHierarchyID()
		if err != nil {
			return Hierarchy{}, false
		}
		return Hierarchy{Root: dir, ID: id}, true
	}
	switch mode {
	case "v2":
		for _, dir := range []string{mountRoot, filepath.Join(mountRoot, "unified")} {
			if h, ok := v2(dir); ok {
				return h, nil
			}
		}
		return Hierarchy{}, fmt.Errorf("--cgroup.hierarchy=v2: no cgroup2 mount at %s or %s/unified", mountRoot, mountRoot)
	case "v1":
		if h, ok := v1(); ok {
			return h, nil
		}
		return Hierarchy{}, fmt.Errorf("--cgroup.hierarchy=v1: no v1 cpu hierarchy at %s/cpu", mountRoot)
	case "auto":
		if h, ok := v2(mountRoot); ok {
			return h, nil
		}
		if h, ok := v1(); ok {
			return h, nil
		}
		if h, ok := v2(filepath.Join(mountRoot, "unified")); ok {
			return h, nil
		}
		return Hierarchy{}, fmt.Errorf("no cgroup2 or v1 cpu hierarchy under %s", mountRoot)
	}
	return Hierarchy{}, fmt.Errorf("--cgroup.hierarchy=%q: must be auto, v2 or v1", mode)
}

// cpuHierarchyID reads the cpu controller's hierarchy id from /proc/cgroups.
func cpuHierarchyID() (int, error) {
	f, err := os.Open("/proc/cgroups")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "cpu" {
			return strconv.Atoi(fields[1])
		}
	}
	return 0, errors.New("/proc/cgroups has no cpu line")
}

// ID returns the cgroup id of a directory in the hierarchy.
func ID(dir string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Cgroup is one directory of the hierarchy.
type Cgroup struct {
	ID    uint64
	Path  string // relative to the hierarchy root, "/" for the root
	Depth int    // 0 for the root
}

// Walk lists every cgroup of the hierarchy. Cgroups removed while walking
// are skipped, not errors. It reads each directory once with getdents and
// takes child ids from the entries' inode numbers, so a node with
// thousands of cgroups (each directory holding dozens of control files)
// costs one open, one or two getdents and one close per cgroup.
func (h Hierarchy) Walk() ([]Cgroup, error) {
	rootID, err := ID(h.Root)
	if err != nil {
		return nil, err
	}
	out := []Cgroup{{ID: rootID, Path: "/", Depth: 0}}
	buf := make([]byte, 16<<10)
	for i := 0; i < len(out); i++ {
		parent := out[i]
		err := readSubdirs(h.Dir(parent.Path), buf, func(name string, ino uint64) {
			p := parent.Path + "/" + name
			if parent.Path == "/" {
				p = "/" + name
			}
			out = append(out, Cgroup{ID: ino, Path: p, Depth: parent.Depth + 1})
		})
		if err != nil && i == 0 {
			return nil, err
		}
	}
	return out, nil
}

// readSubdirs calls fn for each subdirectory of dir.
func readSubdirs(dir string, buf []byte, fn func(name string, ino uint64)) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for off := 0; off < n; {
			ino := binary.NativeEndian.Uint64(buf[off:])
			reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
			typ := buf[off+18]
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if typ == unix.DT_DIR && string(name) != "." && string(name) != ".." {
				fn(string(name), ino)
			}
			off += reclen
		}
	}
}

// Dir returns the directory of a cgroup path.
func (h Hierarchy) Dir(path string) string {
	return filepath.Join(h.Root, filepath.FromSlash(path))
}

// Ancestor returns path cut to at most depth elements ("/" for depth 0).
func Ancestor(path string, depth int) string {
	if path == "/" || depth <= 0 {
		return "/"
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) <= depth {
		return path
	}
	return "/" + strings.Join(parts[:depth], "/")
}

// PathOf returns the path, in this hierarchy, of the cgroup process pid
// belongs to (from /proc/<pid>/cgroup; pid 0 means the caller).
func (h Hierarchy) PathOf(pid int) (string, error) {
	file := "/proc/self/cgroup"
	if pid > 0 {
		file = fmt.Sprintf("/proc/%d/cgroup", pid)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if h.V2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if !h.V2 && parts[0] == strconv.Itoa(h.ID) {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("%s names no cgroup in %s", file, h)
}
