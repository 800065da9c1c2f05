// Package keys builds, validates and hashes the Redis keys used by tiercache.
//
// Keys follow the Redis convention "ns:part:part" with Sep (":") between
// parts. Every part that comes from a user is checked by Validate before it
// becomes a key, so a bad id fails fast with a clear error instead of costing
// a Redis round trip or producing a key that tools cannot display. Input that
// can be arbitrarily long (search queries, filters) should be hashed with Hash
// first and the hash used as the part.
//
// Braces are reserved: the library itself places Redis Cluster hash tags
// ({...}) so that keys touched together by one Lua script or MULTI, such as a
// value key and its lease key, land in the same slot. Because user parts can
// never contain braces, a key the library derives with a brace (VersionKey,
// LeaseKey) cannot collide with a user key, and remote.Slot can predict
// where every key lives.
package keys
