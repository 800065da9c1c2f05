package main

import (
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// report prints the whole run's counters: the keyspaces' Stats summed over
// both replicas, the database's query count, the load phase's latency per
// tier and the Clients' bus counters.
func report(p *printer, db *DB, a, b *replica, res *result) {
	p.section("report: both replicas, whole run")
	p.line("%-9s %10s %7s %7s %7s %8s", "keyspace", "reads", "local", "Redis", "DB", "entries")
	var sum tiered.Stats
	row := func(name string, s tiered.Stats) {
		reads := s.LocalHits + s.LocalMisses
		p.line("%-9s %10s %7s %7s %7s %8s", name, commas(reads),
			pct(s.LocalHits, reads), pct(s.RedisHits, reads), pct(s.Loads, reads), commas(uint64(s.LocalEntries)))
	}
	for _, ks := range []struct {
		name string
		a, b tiered.Stats
	}{
		{"user", a.users.Stats(), b.users.Stats()},
		{"product", a.products.Stats(), b.products.Stats()},
		{"search", a.search.Stats(), b.search.Stats()},
	} {
		s := addStats(ks.a, ks.b)
		row(ks.name, s)
		sum = addStats(sum, s)
	}
	row("all", sum)
	res.Reads, res.TotalQueries = sum.LocalHits+sum.LocalMisses, uint64(db.Queries())
	saved := uint64(0)
	if res.Reads > res.TotalQueries {
		saved = res.Reads - res.TotalQueries
	}
	p.line("DB: %s queries for %s reads: %s queries saved (%s)",
		commas(res.TotalQueries), commas(res.Reads), commas(saved), pct(saved, res.Reads))
	p.line("leases: %s won, %s lost (%s answered by the holder's fill); %d fills refused; %s negative hits",
		commas(sum.LeasesWon), commas(sum.LeasesLost), commas(sum.LeaseWaits), sum.FillsRefused, commas(sum.NegativeHits))
	ua, ub := a.users.Stats(), b.users.Stats()
	res.Verified, res.Inconsistent = ua.Verified+ub.Verified, ua.Inconsistent+ub.Inconsistent
	p.line("verifier (user, 1%% of hits checked 200ms later): %s checked, %d inconsistent, %s database reads of its own",
		commas(res.Verified), res.Inconsistent, commas(uint64(db.verifyQueries.Load())))

	p.line("%-24s %10s %8s %8s", "load-phase Get latency", "count", "p50", "p99")
	for t := range res.latency {
		h := &res.latency[t]
		p.line("  %-22s %10s %8s %8s", tierNames[t], commas(h.n), dur(h.quantile(0.50)), dur(h.quantile(0.99)))
	}
	ca, cb := a.c.Stats(), b.c.Stats()
	res.InvalidationsApplied = ca.InvalidationsApplied + cb.InvalidationsApplied
	p.line("bus: A sent %d, applied %d; B sent %d, applied %d; own messages ignored %d; disconnects %d",
		ca.InvalidationsSent, ca.InvalidationsApplied, cb.InvalidationsSent, cb.InvalidationsApplied,
		ca.IgnoredOwn+cb.IgnoredOwn, ca.BusDisconnects+cb.BusDisconnects)
}

func addStats(x, y tiered.Stats) tiered.Stats {
	return tiered.Stats{
		LocalHits:    x.LocalHits + y.LocalHits,
		LocalMisses:  x.LocalMisses + y.LocalMisses,
		LocalEntries: x.LocalEntries + y.LocalEntries,
		RedisHits:    x.RedisHits + y.RedisHits,
		Loads:        x.Loads + y.Loads,
		NegativeHits: x.NegativeHits + y.NegativeHits,
		LeasesWon:    x.LeasesWon + y.LeasesWon,
		LeasesLost:   x.LeasesLost + y.LeasesLost,
		LeaseWaits:   x.LeaseWaits + y.LeaseWaits,
		FillsRefused: x.FillsRefused + y.FillsRefused,
	}
}

// hist is a log-linear latency histogram: 16 buckets per power of two, so a
// quantile is within 1/16 of the truth, in 8 KB whatever the sample count.
type hist struct {
	n uint64
	b [1024]uint64
}

func bucket(ns uint64) int {
	if ns < 16 {
		return int(ns)
	}
	e := bits.Len64(ns) - 5 // ns>>e is in [16, 32)
	return 16*e + int(ns>>uint(e))
}

// bucketMid is the middle of bucket i's range, in ns.
func bucketMid(i int) uint64 {
	if i < 16 {
		return uint64(i)
	}
	e := i/16 - 1
	m := uint64(i - 16*e)
	return m<<uint(e) + (uint64(1)<<uint(e))/2
}

func (h *hist) add(d time.Duration) {
	h.b[bucket(uint64(max(d, 0)))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	h.n += o.n
	for i, c := range o.b {
		h.b[i] += c
	}
}

// quantile returns the q-quantile (0 < q <= 1), 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.b {
		if seen += c; seen >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return 0
}

// printer writes the example's lines and remembers the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) section(title string) { p.printf("-- %s\n", title) }

func (p *printer) line(format string, args ...any) { p.printf("   "+format+"\n", args...) }

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// dur prints a duration with three significant digits at most.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func pct(n, of uint64) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

func cents(c int64) string { return fmt.Sprintf("$%d.%02d", c/100, c%100) }

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// commas prints n with thousands separators.
func commas(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
