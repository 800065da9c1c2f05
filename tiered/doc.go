// Package tiered is tiercache's public API: a typed, two-tier read cache.
//
// A Client owns one Redis connection set (which the caller provides and
// keeps ownership of), one invalidation bus and one coarse clock. Each
// Keyspace[V] is one kind of data ("user", "session", "search") with its own
// local tier of decoded values, its own TTLs, codec and loader.
//
// Where a Get goes, file by file:
//
//	get.go      validate id, local tier lookup (no lock on the policy, no
//	            allocation, no decode); a miss joins this process's one
//	            flight for the id (flight.go)
//	miss.go     the miss path: one miss per id, one batch per call
//	            (GetMany's in getmany.go), the order of the steps below
//	key.go      the Redis key: keyspace epoch and group version applied
//	read.go     Redis GET (pipelined for a batch), decode, fill local
//	lease.go    absent or stale: take the lease, or wait for its holder
//	load.go     the Loader, once for the batch
//	fill.go     fill Redis under the lease, then the local tier
//	refresh.go  early refresh and stale-while-revalidate, in the background
//	degrade.go  Redis failing: the circuit breaker, the loader directly
//
// Writes (write.go: Set, Delete, InvalidateGroup, InvalidateAll) change
// Redis and publish the invalidation in one atomic script, so peers evict
// their local copies (peer.go); what cannot reach Redis is queued and
// replayed (replay.go). Redis errors never reach callers that have a
// Loader: reads fall through to the Loader. See the README for the
// consistency guarantee and the failure modes.
package tiered
