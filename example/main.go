package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/zap"
)

func main() {
	err := mainErr(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "example: FAILED:", err)
		os.Exit(1)
	}
}

func mainErr(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	addr := fs.String("redis", os.Getenv("REDIS_ADDR"), "Redis `host:port` (default $REDIS_ADDR; empty: an embedded miniredis)")
	load := fs.Duration("load", 2*time.Second, "length of the load phase")
	workers := fs.Int("workers", 32, "reader goroutines in the load phase, half on each replica")
	latency := fs.Duration("db-latency", 20*time.Millisecond, "simulated database round trip")
	metricsAddr := fs.String("metrics", "", "serve /metrics (Prometheus text format) on `host:port` while the example runs, e.g. :9090")
	postgres := fs.String("postgres", os.Getenv("DATABASE_URL"), "PostgreSQL connection `string` (default $DATABASE_URL; empty: no change-data-capture step)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workers < 2 || *load <= 0 || *latency < 0 {
		return fmt.Errorf("-workers must be at least 2, -load positive and -db-latency not negative")
	}

	cfg := config{
		Addr: *addr, Latency: *latency, Users: 300, Products: 120,
		Workers: *workers, Load: *load, WriteEach: 20 * time.Millisecond, Postgres: *postgres, Metrics: *metricsAddr,
	}
	where := "Redis at " + cfg.Addr
	if cfg.Addr == "" {
		mr, err := startMiniredis()
		if err != nil {
			return err
		}
		defer mr.Close()
		cfg.Addr, cfg.Embedded = mr.Addr(), true
		where = "an embedded miniredis at " + cfg.Addr
	}
	if log, err := warnLogger(cfg.Embedded); err == nil {
		defer log.Sync() //nolint:errcheck // stderr
		cfg.Logger = log
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	fmt.Fprintf(out, "tiercache example: replicas A and B share %s; the DB answers in %s\n", where, dur(cfg.Latency))
	if _, err := run(ctx, cfg, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "-- all checks passed in %s\n", dur(time.Since(start)))
	return nil
}

// startMiniredis starts an in-process Redis. Its keys expire with the wall
// clock (ClockTTL), as a real Redis's do, so leases and TTLs behave.
func startMiniredis() (*miniredis.Miniredis, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("starting embedded miniredis: %w", err)
	}
	mr.ClockTTL(true)
	return mr, nil
}

// warnLogger is zap's production logger (JSON on stderr) at warn level: the
// library's rate-limited warnings show, its debug events do not.
func warnLogger(embedded bool) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	if embedded {
		// miniredis has no INFO server section, so the library warns that
		// it cannot detect restarts: true, and beside the point in-process.
		zc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	}
	return zc.Build()
}
