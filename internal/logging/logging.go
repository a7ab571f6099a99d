// Package logging builds the process's one log/slog logger from the log
// block of the configuration, and the proxy's access log: records of that
// logger, or JSON lines in a file of their own (proxy.access_log: PATH).
// Level, format and the access log's destination change on reload: the
// loggers handed out keep working and follow the new settings.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// Logs is the process's logging: the main logger and the access logger.
type Logs struct {
	out   io.Writer
	level slog.LevelVar
	// format is the main handler's current format; fixed means the main
	// handler was given (Wrap) and Apply leaves it alone.
	format string
	fixed  bool
	main   *Handler
	access *Handler

	mu   sync.Mutex // orders access-log file changes
	file *os.File   // the access log's own file, nil for the main log
	path string
}

// New writes the main log to out, as cfg says.
func New(out io.Writer, cfg config.Log) *Logs {
	l := &Logs{out: out}
	l.level.Set(ParseLevel(cfg.Level))
	l.format = cfg.Format
	l.main = NewHandler(l.handler(cfg.Format))
	l.access = NewHandler(l.main)
	return l
}

// Wrap uses logger's handler as the main log; Apply then changes nothing of
// it. For callers (tests) that bring their own logger.
func Wrap(logger *slog.Logger) *Logs {
	l := &Logs{fixed: true, main: NewHandler(logger.Handler())}
	l.access = NewHandler(l.main)
	return l
}

func (l *Logs) handler(format string) slog.Handler {
	opts := &slog.HandlerOptions{Level: &l.level}
	if format == "json" {
		return slog.NewJSONHandler(l.out, opts)
	}
	return slog.NewTextHandler(l.out, opts)
}

// ParseLevel maps a validated log.level to its slog level; "" is info.
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Logger is the main logger.
func (l *Logs) Logger() *slog.Logger { return slog.New(l.main) }

// AccessLogger is the access log: records of the main logger (at info, so
// log.level warn or error hides them), or of its own file once
// SetAccessFile named one.
func (l *Logs) AccessLogger() *slog.Logger { return slog.New(l.access) }

// Apply takes a reloaded log block: the level at once, the format for the
// records that follow.
func (l *Logs) Apply(cfg config.Log) {
	if l.fixed {
		return
	}
	l.level.Set(ParseLevel(cfg.Level))
	l.mu.Lock()
	defer l.mu.Unlock()
	if cfg.Format != l.format {
		l.format = cfg.Format
		l.main.Set(l.handler(cfg.Format))
	}
}

// PrepareAccessFile opens path (appending) for the access log, or for ""
// prepares the switch back to the main log. Nothing changes until commit is
// called, and cancel closes what was opened instead; on error nothing
// changed. A path equal to the current one is kept open as it is.
func (l *Logs) PrepareAccessFile(path string) (commit, cancel func(), err error) {
	l.mu.Lock()
	same := path == l.path
	l.mu.Unlock()
	if same {
		return func() {}, func() {}, nil
	}
	var f *os.File
	if path != "" {
		f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("proxy.access_log: %w", err)
		}
	}
	cancel = func() {
		if f != nil {
			_ = f.Close()
		}
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		old := l.file
		l.file, l.path = f, path
		if f != nil {
			l.access.Set(slog.NewJSONHandler(f, nil))
		} else {
			l.access.Set(l.main)
		}
		if old != nil {
			_ = old.Close()
		}
	}, cancel, nil
}

// Close closes the access log's file, if any; the access log goes back to
// the main log.
func (l *Logs) Close() {
	if commit, _, err := l.PrepareAccessFile(""); err == nil {
		commit()
	}
}

// Handler is a slog.Handler whose destination Set replaces while loggers
// hold it. Handlers derived with WithAttrs or WithGroup follow the
// replacement too; each rebuilds its derived handler once per Set.
type Handler struct {
	root  *atomic.Pointer[box]
	ops   []func(slog.Handler) slog.Handler
	cache atomic.Pointer[derived]
}

type box struct{ h slog.Handler }

type derived struct {
	base *box
	h    slog.Handler
}

// NewHandler forwards to h until Set.
func NewHandler(h slog.Handler) *Handler {
	root := &atomic.Pointer[box]{}
	root.Store(&box{h})
	return &Handler{root: root}
}

// Set makes every record from now on, of h and of the handlers derived from
// it, go to next.
func (h *Handler) Set(next slog.Handler) { h.root.Store(&box{next}) }

func (h *Handler) current() slog.Handler {
	b := h.root.Load()
	if len(h.ops) == 0 {
		return b.h
	}
	if d := h.cache.Load(); d != nil && d.base == b {
		return d.h
	}
	x := b.h
	for _, op := range h.ops {
		x = op(x)
	}
	h.cache.Store(&derived{base: b, h: x})
	return x
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.current().Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *Handler) with(op func(slog.Handler) slog.Handler) *Handler {
	ops := make([]func(slog.Handler) slog.Handler, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &Handler{root: h.root, ops: append(ops, op)}
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithAttrs(as) })
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}
