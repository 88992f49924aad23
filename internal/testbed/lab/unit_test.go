package lab

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/scx-slo/scx-slo/internal/testbed/needs"
)

func TestParseSources(t *testing.T) {
	deb822 := `Types: deb
# comment
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://other.example/debian
Suites: trixie
Components: main
Enabled: no
`
	got, err := parseDeb822Sources(deb822, "x.sources")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].URIs[0] != "http://mirror.example/debian/" || !reflect.DeepEqual(got[0].Suites, []string{"bookworm", "bookworm-updates"}) ||
		got[0].SignedBy != "/usr/share/keyrings/debian-archive-keyring.gpg" {
		t.Errorf("deb822 parse = %+v", got)
	}
	one, err := parseOneLineSources("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main # tail\n# deb-src x y z\n", "x.list")
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || one[0].SignedBy != "/k.gpg" || one[0].URIs[0] != "http://m.example/debian" || one[0].Suites[0] != "bookworm" || one[0].Components[0] != "main" {
		t.Errorf("one-line parse = %+v", one)
	}
}

func TestHostDebianArchivePicksHostRelease(t *testing.T) {
	etc := t.TempDir()
	os.MkdirAll(filepath.Join(etc, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "vendor.list"), []byte("deb https://vendor.example/apt cloud-sdk-bookworm main\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "debian.sources"), []byte("Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "sources.list.d", "old.sources.disabled"), []byte("garbage"), 0o644)
	osr := filepath.Join(etc, "os-release")
	os.WriteFile(osr, []byte("ID=debian\nVERSION_CODENAME=bookworm\n"), 0o644)
	a, err := hostDebianArchive(etc, osr)
	if err != nil {
		t.Fatal(err)
	}
	if a.URI != "http://mirror.example/debian" {
		t.Errorf("URI = %q, want the bookworm source without trailing slash", a.URI)
	}
	os.WriteFile(osr, []byte("ID=debian\nVERSION_CODENAME=trixie\n"), 0o644)
	if _, err := hostDebianArchive(etc, osr); err == nil || !strings.Contains(err.Error(), `"trixie"`) {
		t.Errorf("error for a host without a matching source = %v, want one naming the release", err)
	}
}

func TestVersionOrder(t *testing.T) {
	rels := []string{"7.3.4+deb13-amd64", "7.3.10+deb13-amd64", "6.19.14+deb13-amd64", "7.2.12+deb13-amd64"}
	for i := range rels {
		for j := range rels {
			if versionLess(rels[i], rels[j]) && versionLess(rels[j], rels[i]) {
				t.Fatalf("%s and %s both less than each other", rels[i], rels[j])
			}
		}
	}
	if !versionLess("7.3.4+deb13-amd64", "7.3.10+deb13-amd64") || !versionLess("6.19.14+deb13-amd64", "7.2.12+deb13-amd64") {
		t.Error("versionLess does not compare numerically")
	}
}

func TestCheckConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config")
	os.WriteFile(p, []byte("CONFIG_SCHED_CLASS_EXT=y\nCONFIG_BPF_SYSCALL=y\n# CONFIG_EXT_GROUP_SCHED is not set\nCONFIG_DEBUG_INFO_BTF=m\n"), 0o644)
	err := checkConfig(p)
	if err == nil || !strings.Contains(err.Error(), "CONFIG_EXT_GROUP_SCHED=y") || !strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF=y") {
		t.Errorf("checkConfig = %v, want both missing options named", err)
	}
}

func TestOptionErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "Options.Kernel"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, CPUs: -1}, "Options.CPUs = -1"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, MemoryMB: 10}, "Options.MemoryMB = 10"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, CPUs: 8, Sockets: 3}, "Options.Sockets = 3"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, CPUs: 2, Sockets: 4}, "Options.Sockets = 4"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, Sockets: -1}, "Options.Sockets = -1"},
		{Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, KernelArgs: []string{"a b"}}, `Options.KernelArgs[0] = "a b"`},
	} {
		if err := tc.opts.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	if _, err := envScript(map[string]string{"BAD-NAME": "x"}); err == nil || !strings.Contains(err.Error(), `"BAD-NAME"`) {
		t.Errorf("envScript error = %v, want the bad name", err)
	}
	if _, err := commandScript(nil); err == nil || !strings.Contains(err.Error(), "Options.Command") {
		t.Errorf("commandScript(nil) = %v, want Options.Command named", err)
	}
	w := newCPIOWriter(&strings.Builder{})
	if err := addCopy(w, Copy{Host: "/etc/hostname", Guest: "relative"}); err == nil || !strings.Contains(err.Error(), `"relative"`) {
		t.Errorf("addCopy relative = %v, want the guest path named", err)
	}
}

func TestSMPTopology(t *testing.T) {
	for _, tc := range []struct {
		cpus, sockets int
		want          string
	}{
		{2, 0, "2"},
		{8, 1, "8"},
		{8, 2, "8,sockets=2,cores=4,threads=1"},
		{16, 4, "16,sockets=4,cores=4,threads=1"},
	} {
		o := Options{Kernel: &Kernel{Vmlinuz: "/proc/self/exe"}, CPUs: tc.cpus, Sockets: tc.sockets}
		if err := o.validate(); err != nil {
			t.Fatalf("validate(CPUs %d, Sockets %d): %v", tc.cpus, tc.sockets, err)
		}
		if got := o.smp(); got != tc.want {
			t.Errorf("-smp for CPUs %d, Sockets %d = %q, want %q", tc.cpus, tc.sockets, got, tc.want)
		}
	}
}

// A dynamically linked executable cannot run in the guest: refuse it.
func TestDynamicExecutableRefused(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err == nil && elfInterpreter(sh) == "" {
		err = errors.New(sh + " is statically linked")
	}
	needs.Part(t, "a dynamically linked /bin/sh", err)
	w := newCPIOWriter(&strings.Builder{})
	err = addCopy(w, Copy{Host: sh, Guest: "/bin/hostsh"})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") || !strings.Contains(err.Error(), sh) {
		t.Errorf("addCopy(%s) = %v, want a dynamic-linking error naming it", sh, err)
	}
}

// TestCheckFragmentApplied: an option of the config fragment that
// olddefconfig dropped (an unmet dependency) is named, and so is one the
// fragment switches off ("# CONFIG_X is not set") that is on anyway
// (selected by another option).
func TestCheckFragmentApplied(t *testing.T) {
	config := filepath.Join(t.TempDir(), ".config")
	if err := os.WriteFile(config, []byte("CONFIG_BPF=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkFragmentApplied(config, []byte("# comment\nCONFIG_BPF=y\nCONFIG_NR_CPUS=64\n# CONFIG_MODULES is not set\n")); err != nil {
		t.Errorf("fragment applied, got %v", err)
	}
	err := checkFragmentApplied(config, []byte("CONFIG_BPF=y\nCONFIG_SCHED_CLASS_EXT=y\nCONFIG_NR_CPUS=8\n"))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_SCHED_CLASS_EXT=y") || !strings.Contains(err.Error(), "CONFIG_NR_CPUS=8") {
		t.Errorf("lost options not named: %v", err)
	}
	err = checkFragmentApplied(config, []byte("# CONFIG_BPF is not set\n# CONFIG_IPV6 is not set\n"))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_BPF=y") || strings.Contains(err.Error(), "IPV6") {
		t.Errorf("an option switched off but on is not named (or one off is): %v", err)
	}
}

// TestResolveKernelRejectsBadSpecs names the bad --kernel value.
func TestResolveKernelRejectsBadSpecs(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []string{"no-such-release", dir + "/missing", "6.x"} {
		_, err := ResolveKernel(t.Context(), dir, spec, nil)
		if err == nil || !strings.Contains(err.Error(), spec) {
			t.Errorf("ResolveKernel(%q) = %v, want an error naming it", spec, err)
		}
	}
	if _, err := BuildKernel(t.Context(), dir, "6", nil); err == nil || !strings.Contains(err.Error(), `"6"`) {
		t.Errorf("BuildKernel(6) = %v, want an error naming the series", err)
	}
}
