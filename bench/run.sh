#!/usr/bin/env bash
# run.sh [COUNT] — runs the benchmark suite COUNT times (default 1), writes
# the raw output to results/latest.txt, the Markdown tables of the README to
# results/latest.md, and a benchstat summary to results/benchstat.txt.
# When BENCH selects LocalHit, each round also runs the parallel local hits
# with -cpu 1,2 into results/scaling.txt (benchstat: results/scaling-benchstat.txt),
# so that scaling from one to two cores is visible.
#
# Each round is a fresh process running every benchmark once, so a machine
# that slows down for a while hurts one round of every row instead of every
# round of a few rows (go test -count N runs one benchmark N times in a row).
# One round takes about 2 minutes on 2 cores, much of it warming caches.
#
# Environment: BENCHTIME (default 500ms) for the timed scenarios; BENCH, a
# regexp of the benchmarks to run (default: all).
set -euo pipefail
cd "$(dirname "$0")"
# bench/ is not in the repository's go.work: it builds with its own go.mod (its
# peers must not change the versions the other modules are tested with).
export GOWORK=off

count=${1:-1}
benchtime=${BENCHTIME:-500ms}
bench=${BENCH:-.}

if ! command -v redis-server >/dev/null; then
	echo "redis-server not found: apt-get install redis-server" >&2
	exit 1
fi

mkdir -p results
out=results/latest.txt
scaling=results/scaling.txt
scalingBench='^BenchmarkLocalHit$/^(hot|100k)$/^parallel$/^(tiercache|golang-lru|otter|map-RWMutex)$'
bin=$(mktemp -d)/bench.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" .

: >"$out"
: >"$scaling"
failed=0 # a failing benchmark fails the script, after the tables are written
for ((i = 1; i <= count; i++)); do
	echo "round $i of $count" >&2
	# Memory fills 1M entries per report: once is enough (-benchtime 1x).
	"$bin" -test.run '^$' -test.bench "$bench" -test.benchmem \
		-test.benchtime "$benchtime" -test.timeout 30m \
		-test.skip '^BenchmarkMemory$' | tee -a "$out" || failed=1
	if [[ "BenchmarkMemory" =~ $bench ]]; then
		"$bin" -test.run '^$' -test.bench '^BenchmarkMemory$' \
			-test.benchtime 1x -test.timeout 30m | tee -a "$out" || failed=1
	fi
	# Kept out of $out: cmd/tables drops the -GOMAXPROCS suffix of names.
	if [[ "BenchmarkLocalHit" =~ $bench ]]; then
		"$bin" -test.run '^$' -test.bench "$scalingBench" -test.cpu 1,2 -test.benchmem \
			-test.benchtime "$benchtime" -test.timeout 30m | tee -a "$scaling" || failed=1
	fi
done

go run ./cmd/tables "$out" >results/latest.md
echo "tables: results/latest.md" >&2

# benchstat lives in golang.org/x/perf, fetched through the module proxy;
# the run's results stand without it.
if go run golang.org/x/perf/cmd/benchstat@latest "$out" >results/benchstat.txt 2>results/benchstat.err; then
	cat results/benchstat.txt
	rm -f results/benchstat.err
else
	echo "benchstat unavailable (see results/benchstat.err); raw results in $out" >&2
fi
if [[ -s "$scaling" ]]; then
	go run golang.org/x/perf/cmd/benchstat@latest "$scaling" >results/scaling-benchstat.txt 2>/dev/null &&
		echo "scaling: results/scaling-benchstat.txt" >&2
fi
if ((failed)); then
	echo "some benchmarks FAILED: see $out" >&2
	exit 1
fi
