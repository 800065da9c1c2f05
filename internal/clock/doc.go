// Package clock provides cheap time sources for the cache hit path.
//
// time.Now is cheap but not free, and a hit in the local tier only needs to
// compare an entry's deadline against "roughly now". Coarse turns that into
// one atomic load by letting a background goroutine advance a shared counter
// every Resolution, at the cost of being up to one Resolution behind. Slow
// paths that need exact time call Precise.
//
// Readings are of type Time: nanoseconds on a monotonic scale with an
// arbitrary origin (the start of the clock), not wall time. Only differences
// and comparisons between readings of the same clock are meaningful.
package clock
