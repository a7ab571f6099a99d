package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/instance"
	"github.com/coopr-gslb/coopr-gslb/internal/logging"
)

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb run -config FILE [-state-log FILE] [-pid-file FILE]\n\nRuns every front door the configuration enables. SIGHUP reloads the configuration;\nSIGTERM and SIGINT shut down gracefully (in-flight requests finish);\nSIGUSR2 upgrades without downtime: a new copy of the binary takes over the\nlistening sockets, serves after its first probe round, and this one exits.\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("config", "config.yaml", "configuration file")
	stateLog := fs.String("state-log", "", "append every routing event as a JSON line, numbered as in /api/v1/events, to this file (\"-\" for stdout)")
	pidFile := fs.String("pid-file", "", "write the PID of the process serving to this file (systemd's PIDFile=; it changes with each SIGUSR2 upgrade)")
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
	// One logger for the process, as the log block says; a reload applies
	// a changed block to it.
	logs := logging.New(os.Stderr, cfg.Log)
	defer logs.Close()
	log := logs.Logger()
	b := buildVersion()
	log.Info("coopr-gslb starting", "version", b.Version, "revision", b.Revision, "goversion", b.GoVersion)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	upg, err := instance.NewUpgrader(*pidFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		return 1
	}
	defer upg.Stop()
	opts := instance.Options{ConfigPath: *path, Logs: logs, Version: version, Upgrader: upg}
	if *stateLog != "" {
		w, closeFn, err := openStateLog(*stateLog)
		if err != nil {
			fmt.Fprintf(os.Stderr, "coopr-gslb: state log: %v\n", err)
			return 1
		}
		defer closeFn()
		opts.StateLog = w
	}
	if err := runInstance(ctx, cfg, opts, nil); err != nil {
		fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
		return 1
	}
	return 0
}

// runInstance builds the instance and runs it until ctx is done. onServing,
// if set, is called once every front door serves.
func runInstance(ctx context.Context, cfg *config.Config, opts instance.Options, onServing func(instance.Addrs)) error {
	inst, err := instance.New(cfg, opts)
	if err != nil {
		return err
	}
	if onServing == nil {
		return inst.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-inst.Serving():
			onServing(inst.Addrs())
		case <-ctx.Done():
		}
	}()
	err = inst.Run(ctx)
	cancel()
	<-done
	return err
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
