// Package remote is the Redis tier of tiercache: the envelope that wraps
// every cached value in Redis, and the handful of Redis operations the cache
// needs (plain GETs, pipelined batch reads, write-and-publish scripts,
// Facebook-style leases and version counters).
//
// Everything that must be atomic with something else is one Lua script whose
// keys share one Redis Cluster hash slot (a value key and its lease key share
// a hash tag; see package keys), so the package works unchanged on a single
// server and on Redis Cluster.
//
// The package knows nothing about decoding values or about the local tier;
// package tiered composes it with them.
package remote
