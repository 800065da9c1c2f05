// Package ratelimit limits request rates per key on the Redis a service
// already uses for its cache: fixed window, sliding window and GCRA, exact
// under concurrency across any number of processes, safe on Redis Cluster,
// and still limiting when Redis is down.
//
//	lim := ratelimit.New(rdb, ratelimit.Options{}) // rdb: any redis.UniversalClient
//	res, err := lim.Allow(ctx, "user:42", ratelimit.PerMinute(100))
//	if err != nil { ... }   // bad input only, never a Redis outage
//	if !res.Allowed { ... } // res.RetryAfter says when to come back
//
// # One script per decision
//
// Each algorithm is one Lua script that reads the time from Redis (TIME),
// decides, writes and sets the key's expiry in one atomic step: no two
// processes can both take the last slot, and no crash between two commands
// can leave a key that never expires (the classic INCR-then-EXPIRE bug).
// The app hosts' clocks never enter a decision. A key's state lives at
// "<Prefix>:{<key>}:gcra" (or ":fixed", ":sliding"): the hash tag keeps it
// in one Cluster slot. Limits of different algorithms on one key are
// independent; two limits of the same algorithm on one key share its state
// (a changed limit applies to the existing state), so give them different
// keys ("user:42:minute", "user:42:hour").
//
// # The algorithms
//
//   - GCRA (the default): a token bucket of Burst requests that refills one
//     per Period/Rate, kept as one timestamp. RetryAfter is exact to the
//     microsecond. Memory: one small string per active key.
//   - FixedWindow: at most Rate per window of Period aligned on the Unix
//     epoch. Memory: one small string per active key. A client can spend
//     Rate at the end of a window and Rate again at the start of the next.
//   - SlidingWindow: at most Rate in any window of length Period. Exact, not
//     the two-counter estimate (which can let a window hold up to 2x Rate
//     when traffic is uneven): a log of the admission times of the last
//     Period, kept as a Redis list (not a sorted set: it needs no unique
//     member per entry and takes a third of the memory at Rate 100), one
//     entry of 10 to 12 bytes per request admitted in the last Period,
//     trimmed with a few LINDEX and one LTRIM per call. (Exact as long as
//     Redis's clock does not step back; if it does, entries out of order
//     may leave the log early or late.) Memory grows with Rate: 1,176
//     bytes per key that used all of Rate 100 (MEMORY USAGE), 10,432 at
//     Rate 1000; GCRA and FixedWindow take 72 and 88 bytes.
//
// # When Redis is down
//
// Every Redis call is bounded (100ms, or the caller's earlier deadline) and
// guarded by a circuit breaker like the cache's: after 5 failures in a row
// calls are decided at once, without the network, until a probe each second
// finds Redis back. Allow never returns an error for a Redis failure;
// Result.Degraded reports a decision taken without Redis, as
// Options.OnError says: FailLocal (the default) enforces every limit in
// this process, in bounded memory, counting what Redis allowed it before
// the outage too, so a process alone never exceeds its limit; FailOpen
// allows; FailClosed denies. The breaker's opening and closing are logged
// once each.
//
// # Bad input
//
// An invalid key (empty, over 1024 bytes, control characters, '{' or '}'),
// a Limit out of bounds, or an n that the limit could never allow (over
// Burst for GCRA, over Rate for the windows) is an error wrapping
// ErrInvalidKey, ErrInvalidLimit or ErrInvalidN, and no Redis call is made.
package ratelimit
