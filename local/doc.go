// Package local is the in-process tier of tiercache: a sharded cache of
// decoded values, keyed by a 64-bit hash of the full key, bounded by a
// number of items and optionally by bytes.
//
// It sits on the hot path of every read, so a hit takes no lock, does not
// allocate, does not decode, and writes no memory that other cores write:
//
//   - index.go: each shard's index is an open-addressing table that
//     readers probe with atomic loads; writers change it under the shard
//     lock and replace it whole when it must grow or shrink.
//   - buffer.go: a hit records its item in a lossy read buffer of the
//     shard, striped by goroutine, and counts itself there (Stats.Hits);
//     whoever completes a buffer's round and wins a TryLock of the shard
//     replays the buffers into the policy.
//   - policy.go, sketch.go: the eviction policy of each shard, run under
//     its lock: W-TinyLFU (a small LRU window, a segmented LRU main space,
//     and a frequency sketch with aging that decides admission) by
//     default, or plain LRU.
//   - room.go: the bounds hold for the whole cache, not per shard, so a
//     working set of Capacity keys fits however its hashes spread.
//   - write.go: stores, deletes and the invalidation generations.
//
// The caller hashes the key (xxhash64 in tiercache) and passes both the hash
// and the key. Only one item is kept per hash, and the stored key is compared
// on every hit, because 64-bit hashes can collide: a collision is a miss,
// never another key's value. Items are immutable: an overwrite stores a new
// item, so a pointer returned by Ref stays valid and unchanged.
//
// Fills from a slower tier race with invalidations: a reader may load an old
// value, an invalidation may arrive, and the reader's fill may then land and
// cache the old value forever. Each shard therefore keeps a generation that
// Set, Replace, Delete and Purge bump. A filler takes a Token before it
// starts reading and stores with SetIfUnchanged, which refuses if the
// generation moved. The check is per shard, not per key, so an unrelated
// invalidation can refuse a fill: that costs one extra miss later, never a
// stale value.
//
// Times are int64 readings of the caller's monotonic clock; this package
// only compares them.
package local
