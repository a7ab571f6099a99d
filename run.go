package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb run -config FILE [-state-log FILE]\n\nRuns every front door the configuration enables. SIGHUP reloads the configuration;\nSIGTERM and SIGINT shut down gracefully.\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("config", "config.yaml", "configuration file")
	stateLog := fs.String("state-log", "", "append every routing event as a JSON line to this file (\"-\" for stdout)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, problems, err := config.LoadFile(*path)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if err != nil {
		if !errors.Is(err, config.ErrInvalid) {
			fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		}
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := runOptions{configPath: *path, logger: newLogger()}
	if *stateLog != "" {
		w, closeFn, err := openStateLog(*stateLog)
		if err != nil {
			fmt.Fprintf(os.Stderr, "coopr-gslb: state log: %v\n", err)
			return 1
		}
		defer closeFn()
		opts.stateLog = w
	}
	if err := serve(ctx, cfg, opts); err != nil {
		fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		return 1
	}
	return 0
}

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openStateLog(path string) (io.Writer, func(), error) {
	if path == "-" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

// runOptions are what serve needs besides the configuration.
type runOptions struct {
	configPath string
	logger     *slog.Logger
	// stateLog, if set, receives every routing event as a JSON line.
	stateLog io.Writer
	// onServing, if set, is called once every front door listens.
	onServing func(addrs boundAddrs)
}

// boundAddrs are the addresses the front doors actually listen on.
type boundAddrs struct {
	HTTP, HTTPS, DNS, Admin string
}
