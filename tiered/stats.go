package tiered

import "sync/atomic"

// Stats are a keyspace's counters since it was created. They are cheap
// enough to keep on always: local counters live in each shard under the
// shard's own lock, the others are atomics touched only off the hit path.
type Stats struct {
	LocalHits         uint64 // Gets answered by the local tier
	LocalMisses       uint64 // local lookups that found nothing usable
	LocalEvictions    uint64 // entries evicted for capacity
	LocalEntries      int    // entries held now
	RedisHits         uint64 // values found in Redis
	RedisMisses       uint64 // keys absent from Redis
	RedisErrors       uint64 // Redis calls that failed (reads fell through to the Loader)
	Corrupt           uint64 // undecodable bytes found in Redis, treated as misses
	Loads             uint64 // Loader calls (a BatchLoader call counts once per id)
	LoadErrors        uint64 // Loader calls that failed with something other than ErrNotFound
	NegativeHits      uint64 // Gets answered "not found" from a cached negative entry
	LeasesWon         uint64 // misses that took the lease and loaded
	LeasesLost        uint64 // misses that found another process loading
	LeaseWaits        uint64 // lost leases that were answered by the holder's fill
	LeaseTimeouts     uint64 // lost leases that waited LeaseWait and loaded themselves
	FillsRefused      uint64 // loads not cached because a write voided the lease
	LocalFillsSkipped uint64 // local fills dropped because an invalidation raced them
	Sets              uint64 // successful Sets
	Deletes           uint64 // ids deleted by successful Deletes
	GroupBumps        uint64 // successful InvalidateGroup calls
	Evicted           uint64 // ids evicted on a peer's invalidation
	EarlyRefreshes    uint64 // background refreshes started by an XFetch draw whose load succeeded (see FillsRefused for those a write voided)
	Revalidations     uint64 // background refreshes of stale values (stale-while-revalidate) whose load succeeded
	RefreshesDropped  uint64 // background refreshes dropped because the queue was full or the Client closing
	StaleServed       uint64 // stale values served inside the StaleWhileRevalidate window or after a lease wait
	StaleOnError      uint64 // stale values served because the Loader (and Redis) failed (StaleIfError)
	LoaderDirect      uint64 // reads answered by the Loader directly because Redis failed (degraded)
}

type counters struct {
	localBypass, redisHits, redisMisses, redisErrors, corrupt      atomic.Uint64
	loads, loadErrors, negativeHits                                atomic.Uint64
	leasesWon, leasesLost, leaseWaits, leaseTimeouts, fillsRefused atomic.Uint64
	localFillsSkipped, sets, deletes, groupBumps, evicted          atomic.Uint64
	earlyRefreshes, revalidations, refreshesDropped                atomic.Uint64
	staleServed, staleOnError, localNotServed, loaderDirect        atomic.Uint64
}
