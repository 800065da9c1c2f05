package pgcdc

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"go.uber.org/zap"
)

// Config configures a Watcher. ConnString and Rules are required; every
// other zero value means the documented default.
type Config struct {
	// ConnString is an ordinary PostgreSQL connection string (URL or
	// key=value) for the database whose tables the rules name. The package
	// adds replication=database for the replication connection. The role
	// needs the REPLICATION attribute, and ownership of the tables to create
	// the publication (see the README's "Invalidation from the database").
	// Required.
	ConnString string

	// Slot is the logical replication slot, created (plugin pgoutput) when
	// missing and never dropped. Every replica of a service uses the same
	// slot: one of them holds it, the others are standbys. Lower-case
	// letters, digits and '_', at most 63 bytes. Default "tiercache".
	Slot string

	// Publication names the tables to stream, created FOR TABLE the rules'
	// tables when missing; tables missing from an existing publication are
	// added to it. Default "tiercache".
	Publication string

	// Rules map tables to invalidation targets. Required, at least one.
	Rules []Rule

	// Logger receives warnings (rate-limited: at most one per message per
	// second), Start's replica identity warnings, and takeovers at Info.
	// Nil: no logging.
	Logger *zap.Logger

	// StandbyRetry is how often a standby (a Watcher whose slot another
	// consumer holds) tries to take the slot. With ServerTimeout it bounds
	// takeover: within StandbyRetry of the active consumer's process dying
	// or closing, within ServerTimeout + StandbyRetry of its host or network
	// failing. Default 1s.
	StandbyRetry time.Duration

	// StatusInterval is how often the active consumer reports its confirmed
	// position to PostgreSQL even when it has not moved, which also proves
	// it alive. Default 1s; at most ServerTimeout/2.
	StatusInterval time.Duration

	// ServerTimeout is wal_sender_timeout for the replication connection:
	// PostgreSQL ends a consumer it has not heard from for this long, which
	// frees the slot for a standby when the active consumer's host or
	// network fails silently. Default 10s (the server's own default is 60s).
	ServerTimeout time.Duration

	// ApplyTimeout bounds one Invalidator call. A call that fails or times
	// out is retried, with backoff, until it succeeds or the Watcher
	// closes; nothing after it is confirmed meanwhile. Default 5s.
	ApplyTimeout time.Duration

	// RetryBackoff is the first wait before retrying failed invalidations
	// (or a failed replication connection); it doubles up to
	// MaxRetryBackoff. Default 50ms.
	RetryBackoff time.Duration

	// MaxRetryBackoff caps the wait between retries. Default 5s.
	MaxRetryBackoff time.Duration

	// MaxPendingIDs bounds, per target, the distinct ids (and, separately,
	// groups) held for invalidation while earlier ones are still being
	// applied, e.g. during a Redis outage. Past it the target's whole
	// keyspace is invalidated instead (InvalidateAll), so memory stays
	// bounded and nothing is lost. Default 100,000.
	MaxPendingIDs int
}

// Rule maps one table to the keyspace its rows are cached in.
type Rule struct {
	// Table is the table, schema-qualified ("public.users") or resolved
	// through the connection's search_path. It must exist at Start.
	Table string

	// Target receives the table's invalidations. A *tiered.Keyspace[V]
	// satisfies it. When it also has InvalidateAll(ctx) error (Keyspace
	// does), a TRUNCATE invalidates the whole keyspace. Required.
	Target Invalidator

	// IDs returns the ids to delete for one change. Empty strings and
	// strings that are not valid tiercache ids are skipped. Default: the
	// primary key of New and, when it is present and differs, of Old;
	// composite keys are joined with ":" in the key's column order.
	IDs func(Change) []string

	// Groups returns the version groups to invalidate for one change
	// (Keyspace.InvalidateGroup). Empty strings are skipped. Default: none.
	Groups func(Change) []string
}

const (
	defaultSlot            = "tiercache"
	defaultPublication     = "tiercache"
	defaultStandbyRetry    = time.Second
	defaultStatusInterval  = time.Second
	defaultServerTimeout   = 10 * time.Second
	defaultApplyTimeout    = 5 * time.Second
	defaultRetryBackoff    = 50 * time.Millisecond
	defaultMaxRetryBackoff = 5 * time.Second
	defaultMaxPendingIDs   = 100_000
)

// ErrConfig is wrapped by every error Start returns for a Config that is
// wrong in itself, before any connection is made.
var ErrConfig = errors.New("pgcdc: invalid config")

// applyDefaults fills in defaults and rejects what no database could fix.
func (c *Config) applyDefaults() error {
	if c.ConnString == "" {
		return fmt.Errorf("%w: ConnString is required", ErrConfig)
	}
	if c.Slot == "" {
		c.Slot = defaultSlot
	}
	if err := validSlotName(c.Slot); err != nil {
		return err
	}
	if c.Publication == "" {
		c.Publication = defaultPublication
	}
	if len(c.Rules) == 0 {
		return fmt.Errorf("%w: no Rules", ErrConfig)
	}
	for i, r := range c.Rules {
		if r.Table == "" {
			return fmt.Errorf("%w: rule %d has no Table", ErrConfig, i)
		}
		if r.Target == nil || reflect.ValueOf(r.Target).Kind() == reflect.Pointer && reflect.ValueOf(r.Target).IsNil() {
			return fmt.Errorf("%w: rule %d (table %q) has no Target", ErrConfig, i, r.Table)
		}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	orDefault(&c.StandbyRetry, defaultStandbyRetry)
	orDefault(&c.ServerTimeout, defaultServerTimeout)
	orDefault(&c.StatusInterval, defaultStatusInterval)
	c.StatusInterval = min(c.StatusInterval, c.ServerTimeout/2)
	orDefault(&c.ApplyTimeout, defaultApplyTimeout)
	orDefault(&c.RetryBackoff, defaultRetryBackoff)
	orDefault(&c.MaxRetryBackoff, defaultMaxRetryBackoff)
	c.MaxRetryBackoff = max(c.MaxRetryBackoff, c.RetryBackoff)
	orDefault(&c.MaxPendingIDs, defaultMaxPendingIDs)
	return nil
}

// orDefault sets a zero or negative setting to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// validSlotName applies PostgreSQL's rule for slot names, so that a bad name
// is a clear error here rather than a syntax error from the server.
func validSlotName(s string) error {
	if len(s) > 63 {
		return fmt.Errorf("%w: slot name %q is longer than 63 bytes", ErrConfig, s)
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_') {
			return fmt.Errorf("%w: slot name %q may contain only lower-case letters, digits and '_'", ErrConfig, s)
		}
	}
	return nil
}
