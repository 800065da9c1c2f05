package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
cpu: Test CPU
BenchmarkLocalHit/hot/serial/tiercache-2   	100	 30.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkLocalHit/hot/serial/golang-lru-2  	100	 20.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkLocalHit/hot/serial/tiercache-2   	100	 10.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkLocalHit/hot/serial/tiercache-2   	100	 20.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkMemory/1000k/tiercache-local-2    	1	 5 ns/op	 200 B/entry
BenchmarkMemory/1000k/golang-lru-2         	1	 5 ns/op	 100 B/entry
--- FAIL: something
PASS
`

func TestParseMedian(t *testing.T) {
	rs, cpu, err := parse(strings.NewReader(sample))
	if err != nil || cpu != "Test CPU" || len(rs) != 4 {
		t.Fatalf("parse = %d results, cpu %q, %v", len(rs), cpu, err)
	}
	if rs[0].name != "LocalHit/hot/serial/tiercache" {
		t.Fatalf("name %q: want the GOMAXPROCS suffix and Benchmark prefix gone", rs[0].name)
	}
	if m, _ := rs[0].median("ns/op"); m != 20 {
		t.Fatalf("median of 30, 10, 20 = %v, want 20", m)
	}
	if _, ok := rs[0].median("B/entry"); ok {
		t.Fatal("median of a unit never reported should be absent")
	}
}

func TestTablesRatiosAndTargets(t *testing.T) {
	rs, _, _ := parse(strings.NewReader(sample))
	var buf bytes.Buffer
	writeTables(&buf, rs)
	writeTargets(&buf, rs)
	out := buf.String()
	for _, want := range []string{
		"| hot/serial | golang-lru | 20 | 1.00× |", // 20 / median(tiercache) 20: counts differ
		"| 1000k | golang-lru | 0.50× | 100 |",     // memory: B/entry ratio, no ns/op
		"| local hit, hot key: tiercache / golang-lru | 1.00 | ≤ 1.30 | yes |",
		"| memory: tiercache local / golang-lru | 2.00 | ≤ 1.50 | **no** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSplit(t *testing.T) {
	b, c, i := split("RedisHit/100B/serial/tiercache")
	if b != "RedisHit" || c != "100B/serial" || i != "tiercache" {
		t.Fatalf("split = %q %q %q", b, c, i)
	}
}

func TestRatioPairsRounds(t *testing.T) {
	a := &result{values: map[string][]float64{"ns/op": {10, 100, 30}}}
	b := &result{values: map[string][]float64{"ns/op": {10, 50, 60}}}
	// Per-round ratios 1, 2, 0.5: median 1. The ratio of medians would be
	// 30/50 = 0.6.
	if q, ok := ratio(a, b, "ns/op"); !ok || q != 1 {
		t.Fatalf("ratio = %v, %v; want the median of per-round ratios, 1", q, ok)
	}
	c := &result{values: map[string][]float64{"ns/op": {40}}}
	if q, ok := ratio(a, c, "ns/op"); !ok || q != 0.75 {
		t.Fatalf("ratio = %v, %v; want the ratio of medians 30/40", q, ok)
	}
}
