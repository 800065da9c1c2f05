package tiered

// What a Client knows of the Redis server, and why: its clock, which every
// freshness decision uses (so app hosts whose clocks disagree still agree on
// what is fresh), and the incarnation of its data (the run and replication
// ids of its masters), whose change (a restart, whatever the data came back
// from; a failover) means the data may be older than what was acknowledged.
// On such a change every keyspace's epoch is renewed, so that no value
// written before it is reachable again.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/remote"
)

// serverView is what the Client last learnt of the server.
type serverView struct {
	mu          sync.Mutex
	incarnation string // "" until learnt, and again after each subscription
	seen        string // the last incarnation learnt, kept across subscriptions
	unreadable  bool   // INFO is refused (ACL): rewinds cannot be detected
	offset      atomic.Int64
	highest     atomic.Uint64 // the largest version or epoch seen: new ones are larger
}

// wall is this host's clock (skewed by tests).
func (c *Client) wall() time.Time {
	if c.hooks != nil && c.hooks.wallSkew != 0 {
		return time.Now().Add(c.hooks.wallSkew)
	}
	return time.Now()
}

// serverNow is the Redis server's clock, as this Client last measured it.
func (c *Client) serverNow() time.Time {
	return c.wall().Add(time.Duration(c.server.offset.Load()))
}

// localTime converts a time of the server's clock (a fresh-until read from
// Redis) into a reading of this Client's clock.
func (c *Client) localTime(t remote.UnixMilli) clock.Time {
	return c.clock.Precise().Add(t.Time().Sub(c.serverNow()))
}

// sawVersion raises the floor of new versions to v.
func (c *Client) sawVersion(v uint64) {
	for {
		cur := c.server.highest.Load()
		if v <= cur || c.server.highest.CompareAndSwap(cur, v) {
			return
		}
	}
}

// incarnation returns the incarnation of the server's data, learning it
// (and the server's clock) first when it is not known. It is "" when the
// server does not say (INFO refused).
func (c *Client) incarnation(ctx context.Context) (string, error) {
	c.server.mu.Lock()
	inc, unreadable := c.server.incarnation, c.server.unreadable
	c.server.mu.Unlock()
	if inc != "" || unreadable {
		return inc, nil
	}
	st, err := c.learnServer(ctx)
	return st.Incarnation, err
}

// learnServer asks the server for its state and records its clock offset
// and, when none is known, its incarnation.
func (c *Client) learnServer(ctx context.Context) (remote.ServerState, error) {
	st, err := c.store.ServerState(ctx)
	if err != nil {
		if remote.IsFailure(err) || ctx.Err() != nil {
			return st, err
		}
		c.server.mu.Lock()
		first := !c.server.unreadable
		c.server.unreadable = true
		c.server.mu.Unlock()
		if first {
			c.log.Warn("cannot read INFO: a Redis restart or failover that loses data will not be detected; grant +info to the Redis user", zap.Error(err))
		}
		return remote.ServerState{}, nil
	}
	c.observeServer(st)
	return st, nil
}

// observeServer records what the server said: its clock offset, and its
// incarnation, counting and logging a change from the last one seen. It
// reports whether the current incarnation changed (a known one replaced).
func (c *Client) observeServer(st remote.ServerState) (changed bool) {
	mid := st.Sent.Add(st.Received.Sub(st.Sent) / 2)
	c.server.offset.Store(int64(st.Time.Sub(mid)))
	c.server.mu.Lock()
	seen := c.server.seen
	changed = c.server.incarnation != "" && c.server.incarnation != st.Incarnation
	c.server.incarnation, c.server.seen = st.Incarnation, st.Incarnation
	c.server.mu.Unlock()
	if seen != "" && seen != st.Incarnation {
		c.rewinds.Add(1)
		c.log.Warn("Redis restarted or failed over: its data may be older than what was written; renewing every keyspace's epoch",
			zap.String("was", seen), zap.String("now", st.Incarnation))
	}
	return changed
}

// forgetIncarnation makes the next epoch read learn the incarnation anew:
// after a subscription, since the server may have restarted meanwhile.
func (c *Client) forgetIncarnation() {
	c.server.mu.Lock()
	c.server.incarnation = ""
	c.server.mu.Unlock()
}

// watchServer checks the server every Options.ServerCheck: its clock
// offset, and whether its data's incarnation changed (a failover on Redis
// Cluster of a master the bus is not connected to leaves the bus alone).
func (c *Client) watchServer() {
	c.spawn(&task{what: "server check"}, func() {
		t := time.NewTicker(c.options.ServerCheck)
		defer t.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
				c.checkServer()
			}
		}
	})
}

// checkServer learns the server's state; when its data's incarnation
// changed, every keyspace's epoch is renewed.
func (c *Client) checkServer() {
	ctx, cancel := context.WithTimeout(c.ctx, c.options.ReadTimeout)
	defer cancel()
	st, err := c.store.ServerState(ctx)
	if err != nil {
		return // a failing Redis is the breaker's business
	}
	if c.observeServer(st) {
		c.renewEpochs(ctx)
	}
}

// renewEpochs makes every keyspace read its epoch again, under the current
// incarnation: the first Client to do so after a change moves the epoch on
// and broadcasts it.
func (c *Client) renewEpochs(ctx context.Context) {
	c.mu.RLock()
	spaces := make([]space, 0, len(c.spaces))
	for _, s := range c.spaces {
		spaces = append(spaces, s)
	}
	c.mu.RUnlock()
	for _, s := range spaces {
		s.flush(true)
		s.renewEpoch(ctx)
	}
	c.flushes.Add(1)
}
