// Command example is a small service that uses every pattern of tiercache:
// two replicas (two tiered.Clients, each with its own go-redis client) in
// front of a simulated database with visible latency, and three keyspaces:
//
//   - "user" (every keyspace name starts with "tiercache-example-"): a Loader, NegativeTTL for missing ids, TTL with jitter,
//     write-through Set and Delete seen by the other replica over Pub/Sub;
//   - "product": a Group func (product id -> category), so one
//     InvalidateGroup call makes a whole category's cached prices
//     unreachable in Redis and in every replica;
//   - "search": ids are keys.Hash of a normalised free-text query, and
//     GetMany loads all misses with one BatchLoader call.
//
// It plays a short scripted scenario, printing which tier answered each
// step and how long it took, then a load phase (concurrent Zipf-skewed reads
// on both replicas, with a writer), then a report built from Keyspace.Stats
// and Client.Stats.
//
// Run it with no Redis at all (it starts an embedded miniredis):
//
//	go run ./example
//
// or against a real Redis with -redis host:port or REDIS_ADDR: its keys all
// start with "tiercache-example-" (or "{tiercache-example-"), its
// invalidations go on the channel "tiercache-example:invalidate", and it
// deletes its keys when it ends. It exits non-zero, with the reason, when
// Redis is unreachable or the cache does not do what a step says.
package main
