package tiered

// Counters: what Stats and ClientStats report, and where each is counted.

import (
	"sync/atomic"
	"time"
)

// Stats are a keyspace's counters since it was created. They are cheap
// enough to keep on always: local counters live in the local tier, the
// others are atomics touched only off the hit path.
type Stats struct {
	LocalHits          uint64 // Gets answered by the local tier
	LocalMisses        uint64 // local lookups that found nothing servable
	LocalEvictions     uint64 // local entries evicted to make room for others (capacity)
	LocalEntries       int    // entries held in the local tier now
	RedisHits          uint64 // values found fresh in Redis (or inside StaleWhileRevalidate)
	RedisMisses        uint64 // keys absent, stale or corrupt in Redis
	RedisErrors        uint64 // Redis calls that failed (reads then fell through to the Loader)
	Corrupt            uint64 // undecodable bytes found in Redis, treated as misses
	Loads              uint64 // Loader calls (a BatchLoader call counts once per id)
	LoadErrors         uint64 // Loader calls that failed with something other than ErrNotFound
	NegativeHits       uint64 // Gets answered "not found" from a cached negative entry
	LeasesWon          uint64 // misses that took the lease and loaded
	LeasesLost         uint64 // misses that found another process loading
	LeaseWaits         uint64 // lost leases that were answered by the holder's fill
	LeaseTimeouts      uint64 // lost leases that waited LeaseWait and then served stale or loaded themselves
	FillsRefused       uint64 // loads not cached because a write voided the lease
	LocalFillsSkipped  uint64 // local fills dropped because an invalidation raced them
	Sets               uint64 // successful Sets
	Deletes            uint64 // ids deleted by successful Deletes
	GroupBumps         uint64 // successful InvalidateGroup calls
	PeerInvalidations  uint64 // ids dropped from the local tier because a peer invalidated them
	EarlyRefreshes     uint64 // background refreshes started by an XFetch draw whose load succeeded (see FillsRefused for those a write voided)
	Revalidations      uint64 // background refreshes of stale values (stale-while-revalidate) whose load succeeded
	RefreshesDropped   uint64 // background refreshes dropped because the queue was full or the Client closing
	StaleServed        uint64 // stale values served inside the StaleWhileRevalidate window or after a lease wait
	StaleOnError       uint64 // stale values served because the Loader (and Redis) failed (StaleIfError)
	LoaderDirect       uint64 // ids loaded without Redis: Redis failed (degraded), or a lease wait ran out
	WritesRepaired     uint64 // recent writes invalidated again because they used an epoch or group version renewed meanwhile
	StaleWritesRefused uint64 // Sets and fills refused because Redis held a higher version (VersionOf)
	SoftTimeouts       uint64 // Gets answered with a stale value because the load took longer than SoftLoadTimeout
	Verified           uint64 // sampled hits checked again after VerifyDelay
	Inconsistent       uint64 // checked hits whose value the cache still served while the source disagreed
	VerifyLoads        uint64 // Loader calls made by the verifier (not in Loads; they cache nothing)
	VerifyDropped      uint64 // sampled hits not checked because the verifier's queue was full
}

// counters are the atomics behind Stats, each named after its field.
type counters struct {
	redisHits, redisMisses, redisErrors, corrupt                   atomic.Uint64
	loads, loadErrors, negativeHits                                atomic.Uint64
	leasesWon, leasesLost, leaseWaits, leaseTimeouts, fillsRefused atomic.Uint64
	localFillsSkipped, sets, deletes, groupBumps                   atomic.Uint64
	peerInvalidations, earlyRefreshes, revalidations               atomic.Uint64
	refreshesDropped, staleServed, staleOnError, loaderDirect      atomic.Uint64
	writesRepaired, staleWritesRefused, softTimeouts               atomic.Uint64
	verified, inconsistent, verifyLoads, verifyDropped             atomic.Uint64
	// localNotServed counts local-tier hits that were not served (stale,
	// another group version, the bus down): Stats moves them from
	// LocalHits to LocalMisses.
	localNotServed atomic.Uint64
}

// Stats returns the keyspace's counters.
func (k *Keyspace[V]) Stats() Stats { return k.stats() }

func (k *Keyspace[V]) stats() Stats {
	// Read before the local tier's counters: every unserved entry was
	// counted as a hit there first, so the difference cannot go below zero.
	notServed := k.counters.localNotServed.Load()
	ls := k.local.Stats()
	c := &k.counters
	return Stats{
		LocalHits:          ls.Hits - notServed,
		LocalMisses:        ls.Misses + notServed,
		LocalEvictions:     ls.Evictions,
		LocalEntries:       k.local.Len(),
		RedisHits:          c.redisHits.Load(),
		RedisMisses:        c.redisMisses.Load(),
		RedisErrors:        c.redisErrors.Load(),
		Corrupt:            c.corrupt.Load(),
		Loads:              c.loads.Load(),
		LoadErrors:         c.loadErrors.Load(),
		NegativeHits:       c.negativeHits.Load(),
		LeasesWon:          c.leasesWon.Load(),
		LeasesLost:         c.leasesLost.Load(),
		LeaseWaits:         c.leaseWaits.Load(),
		LeaseTimeouts:      c.leaseTimeouts.Load(),
		FillsRefused:       c.fillsRefused.Load(),
		LocalFillsSkipped:  c.localFillsSkipped.Load(),
		Sets:               c.sets.Load(),
		Deletes:            c.deletes.Load(),
		GroupBumps:         c.groupBumps.Load(),
		PeerInvalidations:  c.peerInvalidations.Load(),
		EarlyRefreshes:     c.earlyRefreshes.Load(),
		Revalidations:      c.revalidations.Load(),
		RefreshesDropped:   c.refreshesDropped.Load(),
		StaleServed:        c.staleServed.Load(),
		StaleOnError:       c.staleOnError.Load(),
		LoaderDirect:       c.loaderDirect.Load(),
		WritesRepaired:     c.writesRepaired.Load(),
		StaleWritesRefused: c.staleWritesRefused.Load(),
		SoftTimeouts:       c.softTimeouts.Load(),
		Verified:           c.verified.Load(),
		Inconsistent:       c.inconsistent.Load(),
		VerifyLoads:        c.verifyLoads.Load(),
		VerifyDropped:      c.verifyDropped.Load(),
	}
}

// ClientStats are the Client-wide counters: the bus's, the breaker's and
// the replay queue's.
type ClientStats struct {
	InvalidationsSent     uint64        // messages published by this Client
	InvalidationsReceived uint64        // messages read from the channel, own included
	InvalidationsApplied  uint64        // messages from peers acted upon
	IgnoredOwn            uint64        // this Client's own messages, ignored
	IgnoredMalformed      uint64        // foreign, malformed or future-version messages
	IgnoredUnknown        uint64        // messages for keyspaces this Client does not have
	Resubscriptions       uint64        // subscriptions after the first (each flushed the local tiers)
	Flushes               uint64        // local flushes of all keyspaces (subscriptions, recoveries, FlushLocal) or of one
	BusDisconnects        uint64        // connection failures or dead connections seen by the bus
	SinceHealthy          time.Duration // time since the bus last proved alive (0 if never)
	BreakerState          string        // "closed", "open" or "half-open"
	BreakerOpens          uint64        // times the circuit breaker opened
	BreakerRejected       uint64        // Redis calls refused at once by the open breaker
	Degraded              time.Duration // total time the breaker was not closed
	ReplayQueued          uint64        // invalidations queued because Redis was unreachable (again on each failed replay)
	Replayed              uint64        // queued invalidations sent again
	ReplayOverflows       uint64        // times a keyspace's queue overflowed (its epoch is bumped instead)
	ReplayPending         int           // invalidations waiting or being replayed now
	InvalidationsDropped  uint64        // invalidations Redis refused for good (an ACL refusal, see Client.Err): not queued, not retried
	ServerRewinds         uint64        // restarts or failovers of Redis seen (its data may have gone back in time): each renewed every keyspace's epoch
}

// Stats returns the Client's counters.
func (c *Client) Stats() ClientStats {
	b := c.bus.Stats()
	s := ClientStats{
		InvalidationsSent:     c.sent.Load(),
		InvalidationsReceived: b.Received,
		InvalidationsApplied:  c.applied.Load(),
		IgnoredOwn:            b.Own,
		IgnoredMalformed:      b.Malformed,
		IgnoredUnknown:        c.unknown.Load(),
		Resubscriptions:       c.resubs.Load(),
		Flushes:               c.flushes.Load(),
		BusDisconnects:        b.Disconnects,
		ServerRewinds:         c.rewinds.Load(),
	}
	bs := c.breaker.Stats()
	s.BreakerState = c.breaker.State().String()
	s.BreakerOpens, s.BreakerRejected, s.Degraded = bs.Opens, bs.Rejected, bs.OpenTime
	q := &c.replay
	q.mu.Lock()
	s.ReplayQueued, s.Replayed, s.ReplayOverflows, s.InvalidationsDropped = q.queued, q.replayed, q.overflows, q.dropped
	s.ReplayPending = q.lenLocked() + q.inflight
	q.mu.Unlock()
	if b.LastHealthyNano > 0 {
		s.SinceHealthy = time.Since(time.Unix(0, b.LastHealthyNano))
	}
	return s
}
