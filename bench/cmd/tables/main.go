// Command tables turns `go test -bench` output of the bench module into the
// Markdown tables of bench/README.md: one table per benchmark, the median of
// every metric over the -count runs, and each row's ratio to tiercache's row
// of the same case (the median of the per-round ratios). A last table checks
// the README's performance targets.
//
//	go run ./cmd/tables results/latest.txt > results/latest.md
//
// With no file argument it reads standard input.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// result is one benchmark's metrics, every run's values kept for the median.
type result struct {
	name   string // "LocalHit/hot/serial/tiercache", without "Benchmark" and "-GOMAXPROCS"
	units  []string
	values map[string][]float64
}

func (r *result) median(unit string) (float64, bool) {
	v := r.values[unit]
	if len(v) == 0 {
		return 0, false
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// ratio is r's unit over ref's. With as many values on both sides (run.sh's
// rounds, where the i-th value of every benchmark comes from the same
// process), it is the median of the per-round ratios, which a slow spell
// affecting one round moves far less than a ratio of medians; otherwise it
// is the ratio of the medians.
func ratio(r, ref *result, unit string) (float64, bool) {
	a, b := r.values[unit], ref.values[unit]
	if len(a) > 0 && len(a) == len(b) {
		q := &result{values: map[string][]float64{}}
		for i := range a {
			if b[i] == 0 {
				return 0, false
			}
			q.values["x"] = append(q.values["x"], a[i]/b[i])
		}
		return q.median("x")
	}
	av, ok1 := r.median(unit)
	bv, ok2 := ref.median(unit)
	if !ok1 || !ok2 || bv == 0 {
		return 0, false
	}
	return av / bv, true
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads benchmark lines ("BenchmarkX/a-2  N  v unit  v unit ...") and
// the cpu: header; other lines are ignored.
func parse(r io.Reader) (results []*result, cpu string, err error) {
	byName := map[string]*result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "cpu: ") {
			cpu = strings.TrimPrefix(line, "cpu: ")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		res := byName[name]
		if res == nil {
			res = &result{name: name, values: map[string][]float64{}}
			byName[name] = res
			results = append(results, res)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := res.values[unit]; !seen {
				res.units = append(res.units, unit)
			}
			res.values[unit] = append(res.values[unit], v)
		}
	}
	return results, cpu, sc.Err()
}

// split returns "LocalHit", "hot/serial", "tiercache" for
// "LocalHit/hot/serial/tiercache".
func split(name string) (bench, cas, impl string) {
	parts := strings.Split(name, "/")
	bench, impl = parts[0], parts[len(parts)-1]
	if len(parts) > 2 {
		cas = strings.Join(parts[1:len(parts)-1], "/")
	}
	return bench, cas, impl
}

// ratioUnit is what the ratio column compares: memory where measured,
// time otherwise.
func ratioUnit(rows []*result) string {
	for _, r := range rows {
		if _, ok := r.values["B/entry"]; ok {
			return "B/entry"
		}
	}
	return "ns/op"
}

func format(v float64, unit string) string {
	switch {
	case unit == "hit-ratio":
		return strconv.FormatFloat(v, 'f', 4, 64)
	case v >= 100 || v == float64(int64(v)):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func writeTables(w io.Writer, results []*result) {
	var order []string
	byBench := map[string][]*result{}
	for _, r := range results {
		b, _, _ := split(r.name)
		if byBench[b] == nil {
			order = append(order, b)
		}
		byBench[b] = append(byBench[b], r)
	}
	for _, b := range order {
		rows := byBench[b]
		var units []string
		seen := map[string]bool{}
		for _, r := range rows {
			for _, u := range r.units {
				if !seen[u] && u != "ns/op" {
					seen[u] = true
					units = append(units, u)
				}
			}
		}
		ru := ratioUnit(rows)
		// Memory's ns/op is the time to fill the cache, not a cost per
		// operation: leave it out.
		showNs := ru == "ns/op"
		fmt.Fprintf(w, "### %s\n\n| case | impl |", b)
		if showNs {
			fmt.Fprint(w, " ns/op |")
		}
		fmt.Fprintf(w, " %s vs tiercache |", ru)
		for _, u := range units {
			fmt.Fprintf(w, " %s |", u)
		}
		fmt.Fprint(w, "\n|---|---|--:|")
		if showNs {
			fmt.Fprint(w, "--:|")
		}
		for range units {
			fmt.Fprint(w, "--:|")
		}
		fmt.Fprintln(w)
		ref := map[string]*result{} // case -> tiercache's row
		for _, r := range rows {
			_, cas, impl := split(r.name)
			if _, ok := ref[cas]; !ok && strings.HasPrefix(impl, "tiercache") {
				ref[cas] = r
			}
		}
		if ru == "B/entry" { // one reference across sizes
			for _, r := range rows {
				if _, _, impl := split(r.name); impl == "tiercache-local" {
					for c := range ref {
						ref[c] = r
					}
				}
			}
		}
		for _, r := range rows {
			_, cas, impl := split(r.name)
			ns, _ := r.median("ns/op")
			rs := "—"
			if rf := ref[cas]; rf != nil {
				if v, ok := ratio(r, rf, ru); ok {
					rs = fmt.Sprintf("%.2f×", v)
				}
			}
			if strings.HasPrefix(impl, "tiercache") {
				impl = "**" + impl + "**"
			}
			fmt.Fprintf(w, "| %s | %s |", cas, impl)
			if showNs {
				fmt.Fprintf(w, " %s |", format(ns, "ns/op"))
			}
			fmt.Fprintf(w, " %s |", rs)
			for _, u := range units {
				if v, ok := r.median(u); ok {
					fmt.Fprintf(w, " %s |", format(v, u))
				} else {
					fmt.Fprint(w, " |")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
}

// target is one README promise: num/den of unit compared with limit.
type target struct {
	what     string
	num, den string
	unit     string
	atMost   bool // num/den <= limit; else >= limit
	limit    float64
}

var targets = []target{
	{"local hit, hot key: tiercache / golang-lru", "LocalHit/hot/serial/tiercache", "LocalHit/hot/serial/golang-lru", "ns/op", true, 1.3},
	{"local hit, 100k keys: tiercache / golang-lru", "LocalHit/100k/serial/tiercache", "LocalHit/100k/serial/golang-lru", "ns/op", true, 1.3},
	{"local hit, hot key: rueidis DoCache+json / tiercache", "LocalHit/hot/serial/rueidis-DoCache", "LocalHit/hot/serial/tiercache", "ns/op", false, 3},
	{"local hit, 100k keys: rueidis DoCache+json / tiercache", "LocalHit/100k/serial/rueidis-DoCache", "LocalHit/100k/serial/tiercache", "ns/op", false, 3},
	{"local hit, hot key: go-redis/cache / tiercache", "LocalHit/hot/serial/go-redis-cache", "LocalHit/hot/serial/tiercache", "ns/op", false, 5},
	{"local hit, 100k keys: go-redis/cache / tiercache", "LocalHit/100k/serial/go-redis-cache", "LocalHit/100k/serial/tiercache", "ns/op", false, 5},
	{"local hit, 100k keys: tiercache parallel / golang-lru serial", "LocalHit/100k/parallel/tiercache", "LocalHit/100k/serial/golang-lru", "ns/op", true, 0.75},
	{"Redis hit, 100 B: tiercache / go-redis GET+json", "RedisHit/100B/serial/tiercache", "RedisHit/100B/serial/go-redis-GET+json", "ns/op", true, 1.2},
	{"Redis hit, 10 KB: tiercache / go-redis GET+json", "RedisHit/10KB/serial/tiercache", "RedisHit/10KB/serial/go-redis-GET+json", "ns/op", true, 1.2},
	{"GetMany(100): tiercache / go-redis pipeline+json", "GetMany/serial/tiercache", "GetMany/serial/go-redis-pipeline+json", "ns/op", true, 1.2},
	{"memory: tiercache local / golang-lru", "Memory/1000k/tiercache-local", "Memory/1000k/golang-lru", "B/entry", true, 1.5},
	// Issue 16's local-tier goals.
	{"local hit, hot key, parallel: tiercache / otter", "LocalHit/hot/parallel/tiercache", "LocalHit/hot/parallel/otter", "ns/op", true, 1.0},
	{"local hit, hot key: tiercache parallel / serial", "LocalHit/hot/parallel/tiercache", "LocalHit/hot/serial/tiercache", "ns/op", true, 1.0},
	{"local hit, 100k keys, parallel: tiercache / otter", "LocalHit/100k/parallel/tiercache", "LocalHit/100k/parallel/otter", "ns/op", true, 1.0},
	{"local hit, 100k keys, serial: tiercache / golang-lru", "LocalHit/100k/serial/tiercache", "LocalHit/100k/serial/golang-lru", "ns/op", true, 1.0},
	{"Zipf(1.01) hit ratio: tiercache / otter", "Zipf/serial/tiercache", "Zipf/serial/otter", "hit-ratio", false, 1.0},
	{"scan-heavy hit ratio: tiercache / otter", "HitRatio/scan/tiercache", "HitRatio/scan/otter", "hit-ratio", false, 1.0},
	{"loop of 150k on 100k, hit ratio: tiercache / otter", "HitRatio/loop-150k/tiercache", "HitRatio/loop-150k/otter", "hit-ratio", false, 1.0},
	{"memory: tiercache local / otter", "Memory/1000k/tiercache-local", "Memory/1000k/otter", "B/entry", true, 1.0},
	{"working set = LocalCapacity: tiercache / golang-lru", "WorkingSet/tiercache", "WorkingSet/golang-lru", "ns/op", true, 1.3},
	{"memory: tiercache Keyspace (100k) / golang-lru (1M)", "Memory/100k/tiercache-Keyspace", "Memory/1000k/golang-lru", "B/entry", true, 1.5},
}

func writeTargets(w io.Writer, results []*result) {
	byName := map[string]*result{}
	for _, r := range results {
		byName[r.name] = r
	}
	fmt.Fprint(w, "### Targets\n\n| target | ratio | limit | met |\n|---|--:|--:|:-:|\n")
	for _, t := range targets {
		n, d := byName[t.num], byName[t.den]
		if n == nil || d == nil {
			continue
		}
		q, ok := ratio(n, d, t.unit)
		if !ok {
			continue
		}
		met := q >= t.limit
		op := "≥"
		if t.atMost {
			met, op = q <= t.limit, "≤"
		}
		mark := "yes"
		if !met {
			mark = "**no**"
		}
		fmt.Fprintf(w, "| %s | %.2f | %s %.2f | %s |\n", t.what, q, op, t.limit, mark)
	}
	// Hit ratios side by side: the Zipf table has them per row already,
	// this line is what the README quotes.
	var hr []string
	for _, r := range results {
		if b, cas, impl := split(r.name); b == "Zipf" && cas == "serial" {
			if v, ok := r.median("hit-ratio"); ok {
				hr = append(hr, fmt.Sprintf("%s %.4f", impl, v))
			}
		}
	}
	if len(hr) > 0 {
		fmt.Fprintf(w, "\nZipf(1.01) hit ratio, 100k of 1M keys, serial: %s\n", strings.Join(hr, ", "))
	}
}

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "tables:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	results, cpu, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tables:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "tables: no benchmark lines in the input")
		os.Exit(1)
	}
	runs := 0
	for _, r := range results {
		runs = max(runs, len(r.values["ns/op"]))
	}
	fmt.Printf("Medians of %d run(s)", runs)
	if cpu != "" {
		fmt.Printf(" on %s", cpu)
	}
	fmt.Print(". Ratios are each row's value over tiercache's row of the same case (ns/op; B/entry for memory):" +
		" the median of the per-round ratios when every row has one value per round.\n\n")
	writeTables(os.Stdout, results)
	writeTargets(os.Stdout, results)
}
