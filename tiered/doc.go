// Package tiered is tiercache's public API: a typed, two-tier read cache.
//
// A Client owns one Redis connection set (which the caller provides and
// keeps ownership of), one invalidation bus and one coarse clock. Each
// Keyspace[V] is one kind of data ("user", "session", "search") with its own
// local tier of decoded values, its own TTLs, codec and loader.
//
// Where a Get goes:
//
//	validate id → local tier (one shard lock, no allocation, no decode)
//	→ Redis (GET, envelope, decode) → fill local
//	→ lease (SET NX PX) → Loader → fill Redis under the lease → fill local
//
// Redis errors never reach callers that have a Loader: reads fall through to
// the Loader. Writes (Set, Delete, InvalidateGroup) change Redis and publish
// the invalidation in one atomic script, so peers evict their local copies.
// See the README for the consistency guarantee and the failure modes.
package tiered
