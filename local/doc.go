// Package local is the in-process tier of tiercache: a sharded LRU of decoded
// values, keyed by a 64-bit hash of the full key.
//
// It sits on the hot path of every read, so a hit takes exactly one shard
// mutex, does not allocate and does not decode. Each shard is a
// golang-lru/v2 simplelru (or a 2Q built from three of them) under the shard's
// own mutex; there is no second lock inside.
//
// The caller hashes the key (xxhash64 in tiercache) and passes both the hash
// and the key. Only one item is kept per hash, and the stored key is compared
// on every hit, because 64-bit hashes can collide: a collision is a miss,
// never another key's value.
//
// Fills from a slower tier race with invalidations: a reader may load an old
// value, an invalidation may arrive, and the reader's fill may then land and
// cache the old value forever. Each shard therefore keeps a generation that
// Set, Delete and Purge bump. A filler takes a Token before it starts reading
// and stores with SetIfUnchanged, which refuses if the generation moved. The
// check is per shard, not per key, so an unrelated invalidation can refuse a
// fill: that costs one extra miss later, never a stale value.
//
// Times are int64 nanoseconds from the caller's clock; this package only
// compares them.
package local
