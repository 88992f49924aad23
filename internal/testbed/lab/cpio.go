package lab

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes the "newc" cpio format that the kernel unpacks into
// the initramfs. Only what an initramfs needs: directories, regular files
// and symlinks, all owned by root.
type cpioWriter struct {
	w    *bufio.Writer
	off  int64
	ino  uint32
	dirs map[string]bool
}

const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{"": true, ".": true, "/": true}}
}

// Mkdir creates dir and any missing parents; the kernel needs parents to
// appear before their children in the archive.
func (c *cpioWriter) Mkdir(dir string, perm uint32) error {
	dir = cleanArchivePath(dir)
	if c.dirs[dir] {
		return nil
	}
	if err := c.Mkdir(path.Dir(dir), 0o755); err != nil {
		return err
	}
	c.dirs[dir] = true
	return c.entry(dir, modeDir|perm, 0, nil)
}

// File adds a regular file whose content is read from r (exactly size bytes).
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) error {
	name = cleanArchivePath(name)
	if err := c.Mkdir(path.Dir(name), 0o755); err != nil {
		return err
	}
	return c.entry(name, modeRegular|perm, size, r)
}

// Bytes adds a regular file with the given content.
func (c *cpioWriter) Bytes(name string, perm uint32, data []byte) error {
	return c.File(name, perm, int64(len(data)), strings.NewReader(string(data)))
}

// Symlink adds name pointing at target.
func (c *cpioWriter) Symlink(name, target string) error {
	name = cleanArchivePath(name)
	if err := c.Mkdir(path.Dir(name), 0o755); err != nil {
		return err
	}
	return c.entry(name, modeSymlink|0o777, int64(len(target)), strings.NewReader(target))
}

// Close writes the trailer record and flushes.
func (c *cpioWriter) Close() error {
	if err := c.header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

func (c *cpioWriter) entry(name string, mode uint32, size int64, r io.Reader) error {
	if size > 0xffffffff {
		return fmt.Errorf("initramfs: %s is %d bytes, larger than cpio's 4 GiB limit", name, size)
	}
	if err := c.header(name, mode, size); err != nil {
		return err
	}
	if size > 0 {
		n, err := io.CopyN(c.w, r, size)
		c.off += n
		if err != nil {
			return fmt.Errorf("initramfs: copying %s: %w", name, err)
		}
	}
	return c.pad()
}

func (c *cpioWriter) header(name string, mode uint32, size int64) error {
	c.ino++
	nlink := 1
	if mode&modeDir == modeDir {
		nlink = 2
	}
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
	// rdevmajor rdevminor namesize check. mtime 0 keeps images reproducible.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	n, err := c.w.WriteString(hdr + name + "\x00")
	c.off += int64(n)
	if err != nil {
		return err
	}
	return c.pad()
}

// pad aligns the stream to 4 bytes, as newc requires after names and data.
func (c *cpioWriter) pad() error {
	for c.off%4 != 0 {
		if err := c.w.WriteByte(0); err != nil {
			return err
		}
		c.off++
	}
	return nil
}

func cleanArchivePath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}
