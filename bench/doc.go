// Package bench runs tiercache beside its peers on the same scenarios, in
// the spirit of uber-go/zap's benchmarks/ module: local hits of a typed
// struct, a Zipf workload's hit ratio, Redis hits, batched reads, misses with
// a loader, and memory per cached entry.
//
// It is its own Go module so that the peers (go-redis/cache, rueidis, otter,
// ...) never become dependencies of the library. Everything lives in _test
// files; the command in cmd/tables turns `go test -bench` output into the
// Markdown tables of README.md. Every run starts its own redis-server on a
// free loopback port.
package bench
