package sloconfig

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/scx-slo/scx-slo/internal/slovalue"
)

// Limits and defaults of the file format (see docs/slo-config.md).
const (
	DefaultImportance = slovalue.DefaultImportance
	MinImportance     = slovalue.MinImportance
	MaxImportance     = slovalue.MaxImportance
	DefaultTarget     = slovalue.DefaultTarget
	MaxLatencyBudget  = slovalue.MaxLatencyBudget
	// MaxFileSize guards against pointing --slo.config-file at something
	// that is not an SLO config; 1 MiB holds tens of thousands of entries.
	MaxFileSize = 1 << 20
	// MaxSLOs bounds the entries of one file. Matching cost barely grows
	// with it (see matcher), but every SLO cgroup needs one of the 4,096
	// overload slots, so a file far beyond that is a mistake.
	MaxSLOs = 10000
)

// SLO is one entry of the config, with defaults applied.
type SLO struct {
	// Cgroup is the pattern as written: a path from the cgroup hierarchy
	// root ("/ls") or a glob ("/kubepods.slice/*/*", "/batch/**").
	Cgroup        string
	LatencyBudget time.Duration
	Importance    int
	Target        float64
	// Line is where the entry starts in the source file, for messages.
	Line int
}

// IsGlob reports whether the entry's cgroup is a pattern rather than one
// exact path.
func (s SLO) IsGlob() bool {
	p, err := compilePattern(s.Cgroup)
	return err == nil && !p.isLiteral
}

// Config is a validated SLO config. Treat it as read-only: the Watcher
// hands the same *Config to every reader, and Match builds its lookup
// index once (Parse does it at once; a hand-built Config on first use).
type Config struct {
	SLOs   []SLO
	Source string // file name given to Parse or Load

	once sync.Once
	m    *matcher
}

// Load reads and parses the file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// readLimited reads the config at path, refusing anything but a regular
// file. It opens without blocking: a plain open of a FIFO waits for a
// writer, which would freeze start-up or the watcher for good.
func readLimited(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read SLO config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read SLO config %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read SLO config %s: not a regular file but %s; point the config path at a YAML file", path, fileKind(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read SLO config %s: %w", path, err)
	}
	return data, nil
}

// fileKind names a non-regular file type for messages.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file (" + m.Type().String() + ")"
}

// Parse validates data as an SLO config. source names the file in error
// messages. On any problem it returns nil and an ErrorList with every
// problem found, so the whole file can be fixed in one pass.
func Parse(data []byte, source string) (*Config, error) {
	p := parser{src: source}
	slos := p.parse(data)
	if len(p.errs) > 0 {
		return nil, p.errs.sorted()
	}
	c := &Config{SLOs: slos, Source: source}
	c.once.Do(c.buildIndex)
	return c, nil
}

// Match returns the SLO that applies to a concrete cgroup path such as
// "/ls" or "/kubepods.slice/pod1/ctr" ("/" is the root; surrounding
// slashes are ignored). An entry naming the exact path wins over globs;
// among globs the first in file order wins. Its cost does not grow with
// the number of globs that cannot match the path (see matcher).
func (c *Config) Match(cgroupPath string) (SLO, bool) {
	c.once.Do(c.buildIndex)
	i, ok := c.m.match("/" + strings.Trim(cgroupPath, "/"))
	if !ok {
		return SLO{}, false
	}
	return c.SLOs[i], true
}

func (c *Config) buildIndex() { c.m = newMatcher(c.SLOs) }

// fileSLO is the on-disk shape of an entry, used to write canonical YAML.
type fileSLO struct {
	Cgroup        string   `yaml:"cgroup"`
	LatencyBudget Duration `yaml:"latencyBudget"`
	Importance    int      `yaml:"importance"`
	Target        float64  `yaml:"target"`
}

// Marshal writes the config in canonical form: every field explicit,
// defaults filled in, durations as time.Duration.String. Parse(Marshal(c))
// yields the same SLOs apart from Line.
func (c *Config) Marshal() ([]byte, error) {
	out := struct {
		SLOs []fileSLO `yaml:"slos"`
	}{SLOs: make([]fileSLO, 0, len(c.SLOs))}
	for _, s := range c.SLOs {
		out.SLOs = append(out.SLOs, fileSLO{s.Cgroup, Duration(s.LatencyBudget), s.Importance, s.Target})
	}
	return yaml.Marshal(out)
}
