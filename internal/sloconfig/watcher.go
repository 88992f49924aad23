package sloconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Defaults for watcher options.
const (
	DefaultDebounce = 100 * time.Millisecond
	// fallbackPoll is used when inotify is unavailable (e.g. the
	// per-user instance limit is reached), so changes are still seen.
	fallbackPoll = 30 * time.Second
	// maxLoggedErrors caps the per-error log lines of one rejected reload.
	maxLoggedErrors = 20
)

// Watcher keeps the current SLO config of one file and reloads it when the
// file changes, on SIGHUP (if asked for) and on Reload. A rejected reload
// keeps the last good config. All methods are safe for concurrent use.
type Watcher struct {
	path     string
	logger   log.Logger
	debounce time.Duration
	poll     time.Duration
	sigs     <-chan os.Signal
	sighup   bool

	reloadMu sync.Mutex // serialises reloads; guards the fields below
	lastData []byte     // content of the last reload attempt that read the file
	lastRead string     // error text of the last failed read, to not repeat it

	mu          sync.Mutex // guards the fields below
	cur         *Config
	ok          bool
	lastSuccess time.Time
	lastErr     error
	subs        []chan *Config
	running     bool
}

// Option configures a Watcher.
type Option func(*Watcher)

// WithSIGHUP makes Run reload on SIGHUP for as long as it runs. While Run
// is active SIGHUP no longer terminates the process.
func WithSIGHUP() Option { return func(w *Watcher) { w.sighup = true } }

// WithReloadSignals makes Run reload whenever a value arrives on ch; the
// caller does its own signal.Notify.
func WithReloadSignals(ch <-chan os.Signal) Option { return func(w *Watcher) { w.sigs = ch } }

// WithDebounce sets how long Run waits after the first file event of a
// burst before reading the file, so that an editor's truncate-and-write
// is read once, complete. Default DefaultDebounce.
func WithDebounce(d time.Duration) Option { return func(w *Watcher) { w.debounce = d } }

// WithPollInterval makes Run also re-read the file every d, for file
// systems without inotify events (some network and FUSE mounts). Off by
// default; Run polls every 30s on its own if inotify cannot be set up.
func WithPollInterval(d time.Duration) Option { return func(w *Watcher) { w.poll = d } }

// NewWatcher loads path; the initial load must succeed. Call Run to start
// watching.
func NewWatcher(path string, logger log.Logger, opts ...Option) (*Watcher, error) {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	w := &Watcher{path: path, logger: log.With(logger, "file", path), debounce: DefaultDebounce}
	for _, o := range opts {
		o(w)
	}
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	w.lastData = data
	w.cur, w.ok, w.lastSuccess = cfg, true, time.Now()
	level.Info(w.logger).Log("msg", "SLO config loaded", "slos", len(cfg.SLOs))
	return w, nil
}

// Current returns the config in force: the last one that loaded cleanly.
func (w *Watcher) Current() *Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// Subscribe returns a channel that holds the current config at once and
// then each newly accepted config. It has room for one value and keeps
// only the newest, so a slow reader skips intermediate configs but never
// misses the latest, and never blocks the watcher. It is never closed.
func (w *Watcher) Subscribe() <-chan *Config {
	ch := make(chan *Config, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	ch <- w.cur
	w.subs = append(w.subs, ch)
	return ch
}

// LastReload reports whether the last load or reload was accepted, when a
// config was last accepted, and why the last reload was rejected (nil if
// it was not). It feeds scx_slo_config_last_reload_successful and
// scx_slo_config_last_reload_success_timestamp_seconds.
func (w *Watcher) LastReload() (ok bool, lastSuccess time.Time, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, w.lastSuccess, w.lastErr
}

// Reload reads and parses the file now, even if it has not changed. On
// success the new config is published; on failure the last good one stays
// and the error (an ErrorList for a bad file) is returned.
func (w *Watcher) Reload() error { return w.reload(true, "request") }

// reload reads the file and, unless forced, skips parsing when the content
// is what the previous attempt saw: directory watches fire for unrelated
// files, and Kubernetes ConfigMap swaps fire several events.
func (w *Watcher) reload(force bool, trigger string) error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	data, err := readLimited(w.path)
	if err != nil {
		if !force && err.Error() == w.lastRead {
			return err
		}
		w.lastRead, w.lastData = err.Error(), nil
		w.reject(err, trigger)
		return err
	}
	w.lastRead = ""
	if !force && w.lastData != nil && bytes.Equal(data, w.lastData) {
		return nil
	}
	w.lastData = data
	cfg, err := Parse(data, w.path)
	if err != nil {
		w.reject(err, trigger)
		return err
	}
	level.Info(w.logger).Log("msg", "SLO config reloaded", "trigger", trigger, "slos", len(cfg.SLOs))
	w.mu.Lock()
	w.cur, w.ok, w.lastSuccess, w.lastErr = cfg, true, time.Now(), nil
	for _, ch := range w.subs {
		select { // replace an unread older config
		case <-ch:
		default:
		}
		ch <- cfg
	}
	w.mu.Unlock()
	return nil
}

func (w *Watcher) reject(err error, trigger string) {
	w.mu.Lock()
	w.ok, w.lastErr = false, err
	w.mu.Unlock()
	var list ErrorList
	if !errors.As(err, &list) {
		level.Error(w.logger).Log("msg", "SLO config reload failed; keeping the last good config", "trigger", trigger, "err", err)
		return
	}
	level.Error(w.logger).Log("msg", "SLO config rejected; keeping the last good config", "trigger", trigger, "errors", len(list))
	// One line per problem: a joined multi-line message is unreadable in logfmt.
	for i, e := range list {
		if i == maxLoggedErrors {
			level.Error(w.logger).Log("msg", fmt.Sprintf("%d more errors not shown", len(list)-i))
			break
		}
		level.Error(w.logger).Log("msg", "SLO config error", "err", e)
	}
}

// Run watches for changes until ctx is done; it returns nil then. It
// watches the file's directory (and the directory of its symlink target)
// rather than the file, because editors replace files by renaming and
// Kubernetes swaps ConfigMap contents by re-pointing a symlink; both leave
// a watch on the old file dead.
func (w *Watcher) Run(ctx context.Context) error {
	if err := w.setRunning(true); err != nil {
		return err
	}
	defer w.setRunning(false)
	sigs, stopSignals := w.reloadSignals(ctx)
	defer stopSignals()
	ch := w.watchChanges()
	defer ch.close()
	// Catch changes made between the initial load and the watch being set
	// up; an unchanged file costs one read.
	w.reload(false, "start")
	w.loop(ctx, sigs, ch)
	return nil
}

// setRunning marks Run as active or not; only one Run at a time.
func (w *Watcher) setRunning(on bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on && w.running {
		return errors.New("sloconfig: Watcher.Run is already running")
	}
	w.running = on
	return nil
}

// reloadSignals returns the channel of signals that force a reload: those
// given WithReloadSignals, and SIGHUP WithSIGHUP until stop is called.
func (w *Watcher) reloadSignals(ctx context.Context) (sigs <-chan os.Signal, stop func()) {
	if !w.sighup {
		return w.sigs, func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return mergeSignals(ctx, w.sigs, hup), func() { signal.Stop(hup) }
}

// loop reloads on file events (debounced), signals and polls until ctx is
// done. The first event of a burst arms the debounce timer; later ones in
// the window are covered by the read when it fires, so a steady stream of
// events cannot postpone the reload forever.
func (w *Watcher) loop(ctx context.Context, sigs <-chan os.Signal, ch *changes) {
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			return
		case _, open := <-ch.events:
			if !open {
				level.Warn(w.logger).Log("msg", "file watch stopped; polling the SLO config instead")
				ch.pollOnly()
				continue
			}
			if !armed {
				armed = true
				debounce.Reset(w.debounce)
			}
		case err, open := <-ch.errs:
			if !open {
				ch.errs = nil
				continue
			}
			level.Warn(w.logger).Log("msg", "file watch error", "err", err)
		case <-debounce.C:
			armed = false
			w.reload(false, "file change")
			ch.follow(w)
		case <-sigs:
			w.reload(true, "signal")
		case <-ch.poll:
			w.reload(false, "poll")
			ch.follow(w)
		}
	}
}

// changes is how Run learns the file may have changed: inotify events on
// the watched directories, a poll ticker, or both.
type changes struct {
	fw     *fsnotify.Watcher // nil without inotify
	events <-chan fsnotify.Event
	errs   <-chan error
	ticker *time.Ticker
	poll   <-chan time.Time // nil when not polling
}

// watchChanges sets up inotify on the file's directories and the poll
// ticker (WithPollInterval, or fallbackPoll when inotify is unavailable,
// e.g. the per-user instance limit is reached).
func (w *Watcher) watchChanges() *changes {
	ch := &changes{ticker: time.NewTicker(time.Hour)}
	ch.ticker.Stop()
	every := w.poll
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		level.Warn(w.logger).Log("msg", "cannot watch the SLO config for changes; polling instead", "err", err)
		if every <= 0 {
			every = fallbackPoll
		}
	} else {
		ch.fw, ch.events, ch.errs = fw, fw.Events, fw.Errors
		w.syncWatches(fw)
	}
	if every > 0 {
		ch.ticker.Reset(every)
		ch.poll = ch.ticker.C
	}
	return ch
}

// pollOnly is the fallback when inotify fails for good.
func (ch *changes) pollOnly() {
	ch.events, ch.errs = nil, nil
	if ch.poll == nil {
		ch.ticker.Reset(fallbackPoll)
		ch.poll = ch.ticker.C
	}
}

// follow re-aims the directory watches after a reload: the symlink
// target's directory changes with every ConfigMap update.
func (ch *changes) follow(w *Watcher) {
	if ch.events != nil {
		w.syncWatches(ch.fw)
	}
}

func (ch *changes) close() {
	ch.ticker.Stop()
	if ch.fw != nil {
		ch.fw.Close()
	}
}

// syncWatches watches the directory of the configured path and of its
// current symlink target, which changes on every ConfigMap update.
// A removed directory drops out of fsnotify's watch list by itself.
func (w *Watcher) syncWatches(fw *fsnotify.Watcher) {
	dirs := []string{filepath.Dir(w.path)}
	if target, err := filepath.EvalSymlinks(w.path); err == nil {
		dirs = append(dirs, filepath.Dir(target))
	}
	have := fw.WatchList()
	for _, d := range dirs {
		if contains(have, d) {
			continue
		}
		if err := fw.Add(d); err != nil {
			level.Warn(w.logger).Log("msg", "cannot watch directory of the SLO config", "dir", d, "err", err)
			continue
		}
		have = append(have, d)
	}
}

// mergeSignals forwards both channels into one until ctx is done.
func mergeSignals(ctx context.Context, a, b <-chan os.Signal) <-chan os.Signal {
	if a == nil {
		return b
	}
	out := make(chan os.Signal, 1)
	go func() {
		for {
			var s os.Signal
			select {
			case <-ctx.Done():
				return
			case s = <-a:
			case s = <-b:
			}
			select {
			case out <- s:
			default: // a reload is already pending
			}
		}
	}()
	return out
}
