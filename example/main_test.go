package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/pgtest"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain checks that a run leaves nothing behind: both Clients, their
// go-redis clients and the embedded miniredis are closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a shorter run than the command's: a faster database and a
// load phase of a fraction of a second, so the test stays quick under -race.
func testConfig(t *testing.T) config {
	t.Helper()
	mr, err := startMiniredis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	return config{
		Addr: mr.Addr(), Embedded: true, Latency: 5 * time.Millisecond,
		Users: 300, Products: 120, Workers: 8, Load: 500 * time.Millisecond, WriteEach: 10 * time.Millisecond,
	}
}

// TestScenario plays the whole scenario and asserts each fact it prints.
func TestScenario(t *testing.T) {
	var out bytes.Buffer
	res, err := run(context.Background(), testConfig(t), &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Cold != "DB load" || res.Warm != "local hit" || res.Peer != "Redis hit" {
		t.Errorf("reads answered by %s, %s, %s; want DB load, local hit, Redis hit", res.Cold, res.Warm, res.Peer)
	}
	if res.SetSeenAfter <= 0 || res.SetSeenAfter > time.Second {
		t.Errorf("Set on A seen on B after %s, want within a second", res.SetSeenAfter)
	}
	if res.DeleteSeenAfter <= 0 {
		t.Errorf("Delete on A never seen on B")
	}
	if res.NegativeQueries != 1 {
		t.Errorf("3 reads of a missing user cost %d DB queries, want 1", res.NegativeQueries)
	}
	if res.GroupSeenAfter <= 0 || res.OtherGroupTier != "local hit" {
		t.Errorf("InvalidateGroup: new price on B after %s, other group answered by %q; want a new price and a local hit",
			res.GroupSeenAfter, res.OtherGroupTier)
	}
	if res.ManyQueries != 1 || res.ManyPeerQueries != 0 {
		t.Errorf("GetMany cost %d then %d DB queries, want 1 then 0", res.ManyQueries, res.ManyPeerQueries)
	}
	if res.Inconsistent != 0 { // how many it checked depends on the machine's speed
		t.Errorf("the verifier found %d of %d checked hits inconsistent; want none", res.Inconsistent, res.Verified)
	}
	if res.StampedeQueries != 1 {
		t.Errorf("%d concurrent cold reads cost %d DB queries, want 1", res.StampedeReads, res.StampedeQueries)
	}
	if res.LoadReads == 0 || uint64(res.LoadQueries) >= res.LoadReads {
		t.Errorf("load phase: %d DB queries for %d reads, want fewer queries than reads", res.LoadQueries, res.LoadReads)
	}
	if res.TotalQueries >= res.Reads {
		t.Errorf("whole run: %d DB queries for %d reads, want fewer queries than reads", res.TotalQueries, res.Reads)
	}
	if res.LoadWrites == 0 || res.Incoherent != 0 {
		t.Errorf("load phase: %d writes, %d incoherent reads; want writes and no incoherent read", res.LoadWrites, res.Incoherent)
	}
	if res.InvalidationsApplied == 0 {
		t.Errorf("no invalidation applied by either replica")
	}
	if res.latency[tierLocal].n == 0 || res.latency[tierDB].n == 0 {
		t.Errorf("load phase measured %d local hits and %d DB loads, want both", res.latency[tierLocal].n, res.latency[tierDB].n)
	}
}

// TestMainOutput runs the command as `go run ./example` does, shortened by
// flags, and checks the shape of its output.
func TestMainOutput(t *testing.T) {
	var out bytes.Buffer
	err := mainErr([]string{"-load", "200ms", "-workers", "4", "-db-latency", "5ms"}, &out)
	if err != nil {
		t.Fatalf("mainErr: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 30 || len(lines) > 45 {
		t.Errorf("%d lines of output, want a compact 30-45:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"embedded miniredis", "local hit", "Redis hit", "DB load", "queries saved", "all checks passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestMainFailsClearly(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-redis", "127.0.0.1:1"}, "unreachable"},
		{[]string{"-workers", "1"}, "-workers"},
		{[]string{"-nope"}, "not defined"},
	} {
		var out bytes.Buffer
		err := mainErr(tc.args, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mainErr(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := got - tc.want; diff < -tc.want/16 || diff > tc.want/16 {
			t.Errorf("quantile(%v) = %s, want %s within 1/16", tc.q, got, tc.want)
		}
	}
	var empty hist
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %s, want 0", got)
	}
	for _, ns := range []uint64{0, 15, 16, 31, 32, 1 << 40, 1<<63 - 1} {
		if b := bucket(ns); b >= len(h.b) || (ns >= 16 && bucketMid(b)>>1 > ns) {
			t.Errorf("bucket(%d) = %d, mid %d", ns, b, bucketMid(b))
		}
	}
}

func TestCommas(t *testing.T) {
	for in, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := commas(in); got != want {
			t.Errorf("commas(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestRealRedisKeepsToItsNamespace runs the example against a real
// redis-server that holds someone else's key: the run touches nothing
// outside its namespace and leaves no key of its own behind.
func TestRealRedisKeepsToItsNamespace(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	ctx := context.Background()
	if err := raw.Set(ctx, "user:1", "someone else's", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Addr, cfg.Embedded = srv.Addr, false
	var out bytes.Buffer
	if _, err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "removed the") {
		t.Fatalf("no cleanup reported:\n%s", out.String())
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 || keys[0] != "user:1" {
		t.Fatalf("keys left in Redis after the run: %v, %v; want only the foreign user:1", keys, err)
	}
	if v, _ := raw.Get(ctx, "user:1").Result(); v != "someone else's" {
		t.Fatalf("the foreign key changed: %q", v)
	}
}

// TestChangeDataCapture runs the example with a PostgreSQL: an UPDATE made
// in SQL reaches both replicas, and the run leaves no replication slot,
// publication or table behind.
func TestChangeDataCapture(t *testing.T) {
	pg := pgtest.Start(t)
	cfg := testConfig(t)
	cfg.Postgres = pg.ConnString("postgres")
	var out bytes.Buffer
	if _, err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "an UPDATE made in SQL") {
		t.Fatalf("no change-data-capture step in:\n%s", out.String())
	}
	left := pg.Psql(t, "postgres", `SELECT count(*) FROM pg_replication_slots`) +
		pg.Psql(t, "postgres", `SELECT count(*) FROM pg_publication`) +
		pg.Psql(t, "postgres", `SELECT count(*) FROM pg_tables WHERE tablename = 'tiercache_example_users'`)
	if strings.ReplaceAll(strings.TrimSpace(left), "\n", "") != "000" {
		t.Fatalf("left in PostgreSQL (slots, publications, tables): %q", left)
	}
}

// TestMetricsEndpoint runs the example with -metrics: /metrics serves both
// replicas' counters and latencies in the Prometheus text format.
func TestMetricsEndpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.Metrics = "127.0.0.1:0"
	var page string
	cfg.scrape = func(addr string) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Errorf("GET /metrics: %v", err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
	}
	var out bytes.Buffer
	if _, err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{
		`tiercache_local_hits_total{keyspace="tiercache-example-user",replica="A"}`,
		`tiercache_local_hits_total{keyspace="tiercache-example-user",replica="B"}`,
		`tiercache_get_duration_seconds_bucket{keyspace="tiercache-example-product",replica="A",tier="loader"`,
		`tiercache_verified_total{keyspace="tiercache-example-user",replica="A"}`,
		`tiercache_invalidations_sent_total{replica="B"}`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
