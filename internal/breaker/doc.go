// Package breaker is the circuit breaker that guards the Redis tier.
//
// When Redis is down, every call to it costs a timeout; a breaker turns that
// into an immediate "no" so reads go straight to the loader. The breaker
// opens after ConsecutiveFailures failures in a row, or when at least
// FailureRatio of the calls in the current Window failed (once the Window
// holds MinRequests calls). While open it refuses calls; after OpenFor it
// becomes half-open and lets exactly one probe through, whose outcome closes
// it again or reopens it for another OpenFor. A probe that never reports (its
// caller gave up without calling Done) does not wedge the breaker: OpenFor
// after it went out, another probe is let through.
//
// We wrote our own rather than use sony/gobreaker because the hot path (Allow
// while closed) must be a single atomic load with no lock and no clock read,
// and because we report time spent open, which needs per-state durations.
//
// Done carries no token, so the breaker cannot tell a probe's report from a
// late report of a call let through before the breaker opened: while
// half-open, the first report of either kind decides. Reports that arrive
// while open are ignored.
package breaker
