// Package pgcdc turns PostgreSQL's own record of committed changes into
// tiercache invalidations, so that no write path can be missed: an UPDATE
// made in psql, by a migration, a batch job or another service evicts the
// cached rows as surely as a Keyspace.Delete would.
//
// A Watcher tails a logical replication slot (plugin pgoutput, protocol
// version 1) through a publication of the rules' tables. For each committed
// transaction it computes, per rule, the ids (by default the primary key) and
// groups that changed, and calls each target's Delete once with all of them
// and InvalidateGroup once per group; a TRUNCATE invalidates the target's
// whole keyspace (InvalidateAll, an epoch bump in tiered).
//
// Delivery is at least once: a transaction's position is confirmed to
// PostgreSQL only after every invalidation of it returned nil. While Redis
// is down nothing is confirmed, PostgreSQL keeps the WAL, and invalidations
// are retried with backoff until they land. When the watched tables are quiet
// the server's WAL end, reported in keepalives, is confirmed instead, so a
// busy database does not make the slot retain WAL.
//
// Every replica of a service may Start a Watcher on the same slot: PostgreSQL
// lets one consumer hold it, and the others wait as standbys, trying every
// Config.StandbyRetry. When the holder dies or closes, a standby takes over
// from the last confirmed position, so no invalidation is lost (some may be
// repeated).
//
// Setup (wal_level, privileges, what a slot costs while no one consumes it,
// replica identity, failover) is described in the README's section
// "Invalidation from the database".
package pgcdc
