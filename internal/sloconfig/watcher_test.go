package sloconfig

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
)

const waitLimit = 5 * time.Second

func sloFile(budget string) []byte {
	return []byte("slos:\n  - cgroup: /ls\n    latencyBudget: " + budget + "\n")
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// logBuf is a log sink the test can read while the watcher writes.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// start creates a watcher on path and runs it until the test ends.
func start(t *testing.T, path string, opts ...Option) (*Watcher, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	w, err := NewWatcher(path, log.NewLogfmtLogger(logs), append([]Option{WithDebounce(20 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w, logs
}

func budgetOf(t *testing.T, c *Config) time.Duration {
	t.Helper()
	if c == nil || len(c.SLOs) != 1 {
		t.Fatalf("unexpected config %+v", c)
	}
	return c.SLOs[0].LatencyBudget
}

// next waits for a config with the given budget on ch, skipping others.
func next(t *testing.T, ch <-chan *Config, budget time.Duration) *Config {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case c := <-ch:
			if budgetOf(t, c) == budget {
				return c
			}
		case <-deadline:
			t.Fatalf("no config with budget %v within %v", budget, waitLimit)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(waitLimit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatcherKeepsLastGoodAndRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slo.yaml")
	write(t, path, sloFile("2ms"))
	w, logs := start(t, path)
	sub := w.Subscribe()
	first := next(t, sub, 2*time.Millisecond)
	if w.Current() != first {
		t.Fatalf("Subscribe did not start with the current config")
	}
	ok, loadedAt, err := w.LastReload()
	if !ok || err != nil || loadedAt.IsZero() {
		t.Fatalf("after initial load: %v %v %v", ok, loadedAt, err)
	}

	write(t, path, sloFile("0ms")) // rewritten in place
	// The watcher may also catch the file truncated but not yet written.
	want := path + `:3: slos[0].latencyBudget: "0ms": must be greater than 0`
	waitFor(t, "rejected reload", func() bool { _, _, err := w.LastReload(); return err != nil && err.Error() == want })
	ok, at, err := w.LastReload()
	if ok || !at.Equal(loadedAt) || err == nil || err.Error() != want {
		t.Fatalf("after bad file: ok=%v at=%v err=%v", ok, at, err)
	}
	if w.Current() != first {
		t.Errorf("a rejected file replaced the config")
	}
	select {
	case c := <-sub:
		t.Errorf("subscriber got a config from a rejected file: %+v", c.SLOs)
	default:
	}
	if l := logs.String(); !strings.Contains(l, "SLO config rejected") || !strings.Contains(l, "must be greater than 0") {
		t.Errorf("log does not explain the rejection:\n%s", l)
	}

	write(t, path, sloFile("3ms"))
	c := next(t, sub, 3*time.Millisecond)
	if w.Current() != c {
		t.Errorf("Current is not the published config")
	}
	ok, at, err = w.LastReload()
	if !ok || err != nil || !at.After(loadedAt) {
		t.Errorf("after fix: ok=%v at=%v (initial %v) err=%v", ok, at, loadedAt, err)
	}
}

func TestWatcherRenameReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slo.yaml")
	write(t, path, sloFile("2ms"))
	w, _ := start(t, path)
	sub := w.Subscribe()
	for i, budget := range []string{"4ms", "5ms"} {
		tmp := filepath.Join(dir, ".slo.yaml.swp")
		write(t, tmp, sloFile(budget))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		next(t, sub, time.Duration(4+i)*time.Millisecond)
	}
}

// Kubernetes mounts a ConfigMap key as slo.yaml -> ..data/slo.yaml with
// ..data -> ..<timestamp>, and updates by re-pointing ..data atomically.
func TestWatcherConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkVersion := func(name, budget string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "slo.yaml"), sloFile(budget))
	}
	mkVersion("..2026_01", "2ms")
	must(t, os.Symlink("..2026_01", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/slo.yaml", filepath.Join(dir, "slo.yaml")))

	w, _ := start(t, filepath.Join(dir, "slo.yaml"))
	sub := w.Subscribe()
	next(t, sub, 2*time.Millisecond)

	for i, v := range []string{"..2026_02", "..2026_03"} {
		mkVersion(v, []string{"6ms", "7ms"}[i])
		must(t, os.Symlink(v, filepath.Join(dir, "..data_tmp")))
		must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		old := []string{"..2026_01", "..2026_02"}[i]
		must(t, os.RemoveAll(filepath.Join(dir, old)))
		next(t, sub, time.Duration(6+i)*time.Millisecond)
	}
}

// A symlink to a file elsewhere: edits to the target are seen too.
func TestWatcherSymlinkTargetEdited(t *testing.T) {
	target := filepath.Join(t.TempDir(), "real.yaml")
	link := filepath.Join(t.TempDir(), "slo.yaml")
	write(t, target, sloFile("2ms"))
	must(t, os.Symlink(target, link))
	w, _ := start(t, link)
	sub := w.Subscribe()
	write(t, target, sloFile("8ms"))
	next(t, sub, 8*time.Millisecond)
}

func TestWatcherFileRemovedAndRestored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slo.yaml")
	write(t, path, sloFile("2ms"))
	w, _ := start(t, path)
	sub := w.Subscribe()
	must(t, os.Remove(path))
	waitFor(t, "failed reload", func() bool { ok, _, _ := w.LastReload(); return !ok })
	if _, _, err := w.LastReload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LastReload err = %v, want not-exist", err)
	}
	if budgetOf(t, w.Current()) != 2*time.Millisecond {
		t.Errorf("config lost when the file went away")
	}
	write(t, path, sloFile("9ms"))
	next(t, sub, 9*time.Millisecond)
}

// SIGHUP re-reads even an unchanged file and publishes a fresh config.
func TestWatcherSIGHUP(t *testing.T) {
	// Keep SIGHUP from ever terminating the test binary, also before the
	// watcher has subscribed and after it has stopped.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(guard) })

	path := filepath.Join(t.TempDir(), "slo.yaml")
	write(t, path, sloFile("2ms"))
	w, logs := start(t, path, WithSIGHUP())
	sub := w.Subscribe()
	initial := <-sub
	// Run may not have called signal.Notify yet, so signal until it reacts.
	deadline := time.After(waitLimit)
	for {
		must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		select {
		case c := <-sub:
			if c == initial || budgetOf(t, c) != 2*time.Millisecond {
				t.Fatalf("unexpected config after SIGHUP")
			}
			if !strings.Contains(logs.String(), "trigger=signal") {
				t.Errorf("reload not logged as signal-triggered:\n%s", logs.String())
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("SIGHUP did not cause a reload")
		}
	}
}

func TestWatcherInjectedSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slo.yaml")
	write(t, path, sloFile("2ms"))
	sigs := make(chan os.Signal, 1)
	w, _ := start(t, path, WithReloadSignals(sigs))
	sub := w.Subscribe()
	initial := <-sub
	sigs <- syscall.SIGHUP
	select {
	case c := <-sub:
		if c == initial {
			t.Fatal("same config object")
		}
	case <-time.After(waitLimit):
		t.Fatal("signal did not cause a reload")
	}
}

func TestWatcherReloadAndErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slo.yaml")
	if _, err := NewWatcher(path, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewWatcher on a missing file: %v", err)
	}
	write(t, path, sloFile("2 ms"))
	if _, err := NewWatcher(path, nil); err == nil || !strings.Contains(err.Error(), `slos[0].latencyBudget: "2 ms"`) {
		t.Errorf("NewWatcher on a bad file: %v", err)
	}
	write(t, path, sloFile("2ms"))
	w, err := NewWatcher(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Reload works without Run.
	write(t, path, sloFile("-2ms"))
	var list ErrorList
	if err := w.Reload(); !errors.As(err, &list) || len(list) != 1 || list[0].Line != 3 {
		t.Errorf("Reload of a bad file: %v", err)
	}
	write(t, path, sloFile("10s"))
	if err := w.Reload(); err != nil || budgetOf(t, w.Current()) != 10*time.Second {
		t.Errorf("Reload: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, "Run to start", func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.running })
	if err := w.Run(ctx); err == nil {
		t.Error("a second concurrent Run was allowed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A change in an intermediate symlink's directory raises no event in the
// watched directories; WithPollInterval still finds it.
func TestWatcherPollSeesUnwatchedChange(t *testing.T) {
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, filepath.Join(d3, "a.yaml"), sloFile("2ms"))
	write(t, filepath.Join(d3, "b.yaml"), sloFile("6ms"))
	must(t, os.Symlink(filepath.Join(d3, "a.yaml"), filepath.Join(d2, "link.yaml")))
	must(t, os.Symlink(filepath.Join(d2, "link.yaml"), filepath.Join(d1, "slo.yaml")))
	sigs := make(chan os.Signal, 1)
	w, logs := start(t, filepath.Join(d1, "slo.yaml"), WithPollInterval(50*time.Millisecond), WithReloadSignals(sigs))
	sub := w.Subscribe()
	initial := <-sub
	// A signal's reload publishes even an unchanged file: once it is out,
	// Run is past its start-up read, so only a poll can see what follows.
	sigs <- syscall.SIGHUP
	select {
	case c := <-sub:
		if c == initial {
			t.Fatal("the signal republished the same config object")
		}
	case <-time.After(waitLimit):
		t.Fatal("signal did not cause a reload")
	}
	tmp := filepath.Join(d2, "tmp")
	must(t, os.Symlink(filepath.Join(d3, "b.yaml"), tmp))
	must(t, os.Rename(tmp, filepath.Join(d2, "link.yaml")))
	next(t, sub, 6*time.Millisecond)
	if !strings.Contains(logs.String(), "trigger=poll slos=1") {
		t.Errorf("change not found by polling:\n%s", logs.String())
	}
}

// A FIFO (or any other non-regular file) at the config path must be
// refused at once: opening a FIFO for reading blocks until a writer comes,
// which used to hang the watcher for good.
func TestWatcherRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	must(t, syscall.Mkfifo(fifo, 0o644))
	if _, err := NewWatcher(fifo, nil); err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("NewWatcher on a FIFO: %v", err)
	}
	if _, err := NewWatcher(dir, nil); err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("NewWatcher on a directory: %v", err)
	}

	path := filepath.Join(dir, "slo.yaml")
	write(t, path, sloFile("2ms"))
	sigs := make(chan os.Signal, 1)
	w, logs := start(t, path, WithReloadSignals(sigs))
	sub := w.Subscribe()
	first := next(t, sub, 2*time.Millisecond)
	must(t, os.Remove(path))
	must(t, syscall.Mkfifo(path, 0o644))
	waitFor(t, "the FIFO to be rejected", func() bool {
		_, _, err := w.LastReload()
		return err != nil && strings.Contains(err.Error(), "not a regular file")
	})
	if ok, _, err := w.LastReload(); ok || !strings.Contains(err.Error(), path) {
		t.Errorf("LastReload after FIFO: ok=%v err=%v", ok, err)
	}
	if w.Current() != first {
		t.Errorf("the FIFO replaced the last good config")
	}
	if !strings.Contains(logs.String(), "not a regular file") {
		t.Errorf("rejection not logged:\n%s", logs.String())
	}
	// The watcher still answers: a signal re-reads (and rejects again),
	// and a regular file put back is loaded.
	sigs <- syscall.SIGHUP
	waitFor(t, "the signal reload to be logged", func() bool { return strings.Contains(logs.String(), "trigger=signal") })
	must(t, os.Remove(path))
	write(t, path, sloFile("4ms"))
	next(t, sub, 4*time.Millisecond)
}
