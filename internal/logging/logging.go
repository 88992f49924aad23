// Package logging builds the project's go-kit logger from the conventional
// --log.level and --log.format flags, and bridges it to the *slog.Logger
// that exporter-toolkit takes, so every line goes through one logger.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Config holds the flag values.
type Config struct {
	Level  string
	Format string
}

type flagGroup interface {
	Flag(name, help string) *kingpin.FlagClause
}

// AddFlags registers --log.level and --log.format.
func AddFlags(a flagGroup) *Config {
	c := &Config{}
	a.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&c.Level, "debug", "info", "warn", "error")
	a.Flag("log.format", "Output format of log messages. One of: [logfmt, json]").
		Default("logfmt").EnumVar(&c.Format, "logfmt", "json")
	return c
}

// New returns a go-kit logger writing to stderr.
func New(c *Config) log.Logger { return NewTo(os.Stderr, c) }

// NewTo returns a go-kit logger writing to w.
func NewTo(w io.Writer, c *Config) log.Logger {
	var l log.Logger
	if c.Format == "json" {
		l = log.NewJSONLogger(log.NewSyncWriter(w))
	} else {
		l = log.NewLogfmtLogger(log.NewSyncWriter(w))
	}
	l = level.NewFilter(l, level.Allow(level.ParseDefault(c.Level, level.InfoValue())))
	return log.With(l, "ts", log.DefaultTimestampUTC, "caller", log.DefaultCaller)
}

// Slog wraps a go-kit logger as a *slog.Logger. Level filtering stays with
// the go-kit logger, so the handler accepts every level.
func Slog(l log.Logger) *slog.Logger { return slog.New(&handler{logger: l}) }

type handler struct {
	logger log.Logger
	attrs  []any
	group  string
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	kv := make([]any, 0, 4+len(h.attrs)+2*r.NumAttrs())
	kv = append(kv, level.Key(), kitLevel(r.Level), "msg", r.Message)
	kv = append(kv, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		kv = append(kv, h.key(a.Key), a.Value.Resolve().Any())
		return true
	})
	return h.logger.Log(kv...)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any{}, h.attrs...)
	for _, a := range attrs {
		n.attrs = append(n.attrs, h.key(a.Key), a.Value.Resolve().Any())
	}
	return &n
}

func (h *handler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = h.key(name)
	return &n
}

func (h *handler) key(k string) string {
	if h.group == "" {
		return k
	}
	return fmt.Sprintf("%s.%s", h.group, k)
}

func kitLevel(l slog.Level) level.Value {
	switch {
	case l >= slog.LevelError:
		return level.ErrorValue()
	case l >= slog.LevelWarn:
		return level.WarnValue()
	case l >= slog.LevelInfo:
		return level.InfoValue()
	}
	return level.DebugValue()
}
