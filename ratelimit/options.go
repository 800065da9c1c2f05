package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// FailureMode is what a Limiter decides while Redis cannot be asked (down,
// slow, or its circuit breaker open). The zero value is FailLocal.
type FailureMode int

const (
	// FailLocal enforces each limit in this process alone, in memory
	// (SlidingWindow in tenths of Period: it may deny up to a tenth of a
	// Period early, never allows more): one process never exceeds a
	// limit, and N processes together allow at most N times it. The local
	// state also counts what Redis allowed this process before the
	// outage, so the switch gives no fresh budget. It holds at most 65,536
	// keys (a few hundred bytes each), dropping first those whose state is
	// back to fresh. The default.
	FailLocal FailureMode = iota
	// FailOpen allows every request.
	FailOpen
	// FailClosed denies every request.
	FailClosed
)

var failureModeNames = [...]string{FailLocal: "FailLocal", FailOpen: "FailOpen", FailClosed: "FailClosed"}

// String returns "FailLocal", "FailOpen" or "FailClosed".
func (m FailureMode) String() string { return enumName(failureModeNames[:], "FailureMode", int(m)) }

// Options configures a Limiter. The zero value is usable: every field has a
// default.
type Options struct {
	// Prefix starts every Redis key the limiter writes:
	// "<Prefix>:{<key>}:gcra", ":fixed" or ":sliding", so that all state of
	// one key sits in one Redis Cluster slot. A valid key part (no '{', '}'
	// or control characters). Default "ratelimit".
	Prefix string
	// OnError is what the limiter decides while Redis cannot be asked.
	// Default FailLocal.
	OnError FailureMode
	// Logger receives the circuit breaker's transitions (Warn when it
	// opens, Info when it closes, once each), warnings about failed Redis
	// calls (at most one per message per second) and, from New, one Info
	// when the client ignores context deadlines. Nothing per request.
	// Default: no logging.
	Logger *zap.Logger

	// Set by this package's tests only.
	callTimeout time.Duration // bound on one Redis call; default defaultCallTimeout
	localKeys   int           // bound on the keys of the local state; default defaultLocalKeys
}

// Defaults that are not options. Redis answers a script in well under a
// millisecond; a call still out after callTimeout means Redis is in
// trouble, and the circuit breaker stops further calls after
// breakerFailures of them in a row, trying one again every breakerOpenFor.
const (
	defaultPrefix      = "ratelimit"
	defaultCallTimeout = 100 * time.Millisecond
	defaultLocalKeys   = 1 << 16
	breakerFailures    = 5
	breakerOpenFor     = time.Second
)

// withDefaults applies the defaults and checks what is left. A bad Options
// does not stop New (which returns no error); every call then returns the
// error.
func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.callTimeout <= 0 {
		o.callTimeout = defaultCallTimeout
	}
	if o.localKeys <= 0 {
		o.localKeys = defaultLocalKeys
	}
	if err := keys.Validate(o.Prefix); err != nil {
		return o, fmt.Errorf("%w: Prefix: %w", ErrInvalidOptions, err)
	}
	if o.OnError < 0 || int(o.OnError) >= len(failureModeNames) {
		return o, fmt.Errorf("%w: unknown OnError %v", ErrInvalidOptions, o.OnError)
	}
	return o, nil
}

var (
	// ErrInvalidKey is returned, wrapped with the reason, for a key that
	// cannot become part of a Redis key: empty, longer than 1024 bytes, not
	// UTF-8, or holding control characters, '{' or '}' (the limiter places
	// the Cluster hash tag itself). No Redis call is made. It is the same
	// error as the cache's (keys.ErrInvalidKey).
	ErrInvalidKey = keys.ErrInvalidKey
	// ErrInvalidLimit is returned, wrapped with the reason, for a Limit
	// out of its documented bounds. No Redis call is made.
	ErrInvalidLimit = errors.New("ratelimit: invalid limit")
	// ErrInvalidN is returned, wrapped with the reason, by AllowN when n is
	// negative or larger than the limit could ever allow at once (Burst
	// for GCRA, Rate for the windows). No Redis call is made.
	ErrInvalidN = errors.New("ratelimit: invalid n")
	// ErrInvalidOptions is returned by every call of a Limiter made from
	// bad Options (nil client, bad Prefix, unknown OnError).
	ErrInvalidOptions = errors.New("ratelimit: invalid options")
	// ErrUnavailable is returned by Reset while the circuit breaker keeps
	// calls from going to Redis. It is the same error as the cache's
	// (remote.ErrUnavailable).
	ErrUnavailable = remote.ErrUnavailable
)
