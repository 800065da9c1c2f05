package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leases (Facebook's memcache): a process that misses takes the key's lease
// before it loads, so only one process loads; its fill is stored only while
// the lease still stands, so a write that happened during the load (and
// removed the lease) is never overwritten by the load's older value.

// LeaseState is the outcome of GetOrLease for one key.
type LeaseState uint8

const (
	// Found: the value is present and fresh; no lease was taken.
	Found LeaseState = 1
	// Won: the value is absent or stale and the caller now holds the lease.
	Won LeaseState = 2
	// Lost: the value is absent or stale and another caller holds the lease.
	Lost LeaseState = 3
)

// LeaseResult is what GetOrLease saw for one key. Value is the fresh value
// when State is Found, and the stale value (or nil) otherwise; it aliases an
// immutable string and must not be modified.
type LeaseResult struct {
	State LeaseState
	Value []byte
}

// Lease names a value key and its lease key.
type Lease struct{ Key, Lease string }

// LeaseRequest is what every lease of one call shares.
type LeaseRequest struct {
	Token string        // the caller's token, unique to it
	TTL   time.Duration // how long a lease taken lives
}

// GetOrLease reads each value and, where it is absent or stale by the
// server's clock, tries to take its lease, atomically per key and pipelined
// across keys: one round trip on a single server, one per node on Redis
// Cluster.
func (s *Store) GetOrLease(ctx context.Context, ls []Lease, r LeaseRequest) (out []LeaseResult, err error) {
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) ([]LeaseResult, error) {
		calls := make([]scriptCall, len(ls))
		args := []interface{}{r.Token, ms(r.TTL)} // shared: a command copies its args
		for i, l := range ls {
			calls[i] = scriptCall{getOrLeaseScript, []string{l.Key, l.Lease}, args}
		}
		cmds, err := s.runPipelined(ctx, calls)
		if err != nil {
			return nil, err
		}
		out := make([]LeaseResult, len(cmds))
		for i, c := range cmds {
			if out[i], err = leaseResult(c); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// leaseResult parses one reply of getOrLeaseScript.
func leaseResult(c *redis.Cmd) (LeaseResult, error) {
	var out LeaseResult
	r, err := c.Slice()
	if err != nil {
		return out, err
	}
	if len(r) == 0 {
		return out, fmt.Errorf("tiercache: empty lease reply")
	}
	st, _ := r[0].(int64)
	out.State = LeaseState(st)
	switch out.State {
	case Found, Won, Lost:
	default:
		return out, fmt.Errorf("tiercache: unexpected lease reply %v", r)
	}
	if len(r) > 1 && r[1] != nil {
		v, ok := r[1].(string)
		if !ok {
			return out, fmt.Errorf("tiercache: unexpected lease reply %v", r)
		}
		out.Value = readOnlyBytes(v)
	}
	if out.State == Found && out.Value == nil {
		return out, fmt.Errorf("tiercache: lease reply found no value")
	}
	return out, nil
}

// ReleaseLeases gives up leases held with token (after a failed or
// uncacheable load), pipelined, so that waiting processes need not wait for
// them to expire.
func (s *Store) ReleaseLeases(ctx context.Context, leases []string, token string) error {
	return guardedErr(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) error {
		calls := make([]scriptCall, len(leases))
		args := []interface{}{token} // shared: a command copies its args
		for i, l := range leases {
			calls[i] = scriptCall{releaseScript, []string{l}, args}
		}
		_, err := s.runPipelined(ctx, calls)
		return err
	})
}

// TryLeases tries to take each lease with token for ttl (SET NX PX),
// pipelined. won[i] reports whether leases[i] was taken. Background
// refreshes use it: the value is present, so only the lease matters.
func (s *Store) TryLeases(ctx context.Context, leases []string, r LeaseRequest) (won []bool, err error) {
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) ([]bool, error) {
		cmds := make([]*redis.BoolCmd, len(leases))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, l := range leases {
				cmds[i] = p.SetNX(ctx, l, r.Token, r.TTL)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		won := make([]bool, len(leases))
		for i, c := range cmds {
			won[i] = c.Val()
		}
		return won, nil
	})
}

// FillOutcome is what became of one fill.
type FillOutcome int8

const (
	// Stored: the value is in Redis.
	Stored FillOutcome = 1
	// Voided: a Set, Delete or expiry voided the lease: the value must be
	// cached nowhere.
	Voided FillOutcome = 0
	// Refused: Redis refused the value (maxmemory with noeviction); the
	// lease is given back.
	Refused FillOutcome = -1
	// Older: Redis holds a newer version; the lease is given back.
	Older FillOutcome = -2
)

// FillLeased stores each value only while the lease taken with token still
// stands (and, with a version, only if Redis holds no newer one), pipelined.
func (s *Store) FillLeased(ctx context.Context, token string, fills []Write) (out []FillOutcome, err error) {
	return guarded(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) ([]FillOutcome, error) {
		calls := make([]scriptCall, len(fills))
		for i, f := range fills {
			calls[i] = scriptCall{fillScript, []string{f.Key, f.Lease}, []interface{}{token, f.Env, ms(f.TTL), f.Version}}
		}
		cmds, err := s.runPipelined(ctx, calls)
		if err != nil {
			return nil, err
		}
		out := make([]FillOutcome, len(cmds))
		for i, c := range cmds {
			n, err := c.Int64()
			if err != nil {
				return nil, err
			}
			out[i] = FillOutcome(n)
		}
		return out, nil
	})
}
