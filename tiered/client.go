package tiered

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
)

// Client is the shared part of every Keyspace: the Redis tier, the
// invalidation bus, the clock and the logger. Create one per process (per
// Redis deployment) with NewClient and Close it on shutdown.
type Client struct {
	opts  Options
	store *remote.Store
	log   *zap.Logger // debug events
	warn  *zap.Logger // warnings, sampled: at most one per message per second
	clk   *clock.Coarse
	pub   invalidation.Publisher
	bus   *invalidation.Bus

	// serveUntil is the clock time until which local entries may be served:
	// extended by every proof of life of the bus, cut on disconnect.
	serveUntil atomic.Int64

	ctx    context.Context // cancelled by Close; parent of shared loads
	cancel context.CancelFunc
	closed atomic.Bool
	close  sync.Once
	bgMu   sync.Mutex     // orders spawn against Close
	bg     sync.WaitGroup // everything spawned: refresh workers, loads, replays

	mu     sync.RWMutex
	spaces map[string]space

	leaseSeq atomic.Uint64
	refreshQ chan func(context.Context)

	sent, applied, unknown, flushes, resubs atomic.Uint64

	br     *breaker.Breaker
	replay replayQueue

	hooks *testHooks // nil outside tests
}

// space is what the Client needs of a Keyspace[V], whatever V.
type space interface {
	evict(ids []string)
	bump(groups []string, versions []uint64)
	flush()
	reset()
	replay(ctx context.Context, ids, groups []string, wholeKeyspace bool) int
}

// NewClient starts a Client: its clock and its invalidation bus. It does not
// wait for Redis: a Client made while Redis is down serves from the Loader
// and catches up when Redis returns.
func NewClient(opts Options) (*Client, error) {
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	node, err := invalidation.NewNodeID()
	if err != nil {
		return nil, fmt.Errorf("tiercache: node id: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts:   opts,
		log:    opts.Logger.Named("tiercache"),
		clk:    clock.NewCoarse(time.Millisecond),
		pub:    invalidation.Publisher{Node: node},
		ctx:    ctx,
		cancel: cancel,
		spaces: make(map[string]space),
		hooks:  opts.hooks,
	}
	c.replay.max = opts.ReplayQueue
	c.br = c.newBreaker()
	c.store = remote.NewStore(opts.Redis, c.br)
	c.warn = c.log.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(core, time.Second, 1, 0)
	}))
	if !c.store.HonoursDeadlines() {
		c.log.Info("the go-redis client ignores context deadlines (ContextTimeoutEnabled is off): " +
			"ReadTimeout and WriteTimeout are enforced with a goroutine per Redis call; enable it for the fastest Redis path")
	}
	c.startRefreshers()
	c.bus = invalidation.NewBus(opts.Redis, opts.Channel, node, busHandler{c}, invalidation.BusOptions{PingEvery: opts.BusTimeout / 4})
	return c, nil
}

// Close stops the bus, the clock and all background work, and waits for
// them. It does not close the Redis client. Calls made after Close return
// ErrClosed; Close is idempotent and safe to call concurrently.
func (c *Client) Close() error {
	c.close.Do(func() {
		c.bgMu.Lock()
		c.closed.Store(true)
		c.bgMu.Unlock()
		c.serveUntil.Store(0)
		c.cancel()
		c.bus.Close()
		c.bg.Wait()
		c.clk.Stop()
	})
	return nil
}

// Node returns this Client's random node id (hex), the origin of the
// invalidations it publishes.
func (c *Client) Node() string { return c.pub.Node.String() }

// Ready reports whether the bus is subscribed and healthy, i.e. whether the
// local tier is being served.
func (c *Client) Ready() bool { return c.clk.Precise() < c.serveUntil.Load() }

// FlushLocal drops every local entry of every keyspace in every process
// sharing the channel (Redis is left as it is).
func (c *Client) FlushLocal(ctx context.Context) error {
	c.flushAll()
	msg, err := c.pub.FlushMessage("")
	if err == nil {
		err = c.publish(ctx, msg)
	}
	if err != nil {
		return &OpError{Op: "flush", Key: "*", Err: err}
	}
	return nil
}

func (c *Client) publish(ctx context.Context, msg []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.WriteTimeout)
	defer cancel()
	if err := c.store.Publish(ctx, c.opts.Channel, msg); err != nil {
		return err
	}
	c.sent.Add(1)
	return nil
}

func (c *Client) register(name string, s space) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	if _, dup := c.spaces[name]; dup {
		return fmt.Errorf("tiercache: keyspace %q already exists in this Client", name)
	}
	c.spaces[name] = s
	return nil
}

func (c *Client) space(name string) space {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.spaces[name]
}

func (c *Client) flushAll() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range c.spaces {
		s.flush()
	}
	c.flushes.Add(1)
}

// leaseToken returns a token no other lease holder anywhere uses: this
// node's random id and a counter.
func (c *Client) leaseToken() string {
	var b [24]byte
	copy(b[:16], c.pub.Node[:])
	binary.BigEndian.PutUint64(b[16:], c.leaseSeq.Add(1))
	return string(b[:])
}

// redisCtx bounds one Redis call; an earlier caller deadline wins.
func (c *Client) redisCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// loadCtx is the context of a load shared by several callers: it keeps the
// first caller's values but not its cancellation, ends after d, and ends
// when the Client closes.
func (c *Client) loadCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	stop := context.AfterFunc(c.ctx, cancel)
	return lctx, func() { stop(); cancel() }
}

// busHandler adapts the Client to invalidation.Handler.
type busHandler struct{ c *Client }

func (h busHandler) Subscribed(first bool) {
	// Flush on the first subscription too: entries filled before it may
	// have missed invalidations published before we listened.
	h.c.resetAll()
	if !first {
		h.c.resubs.Add(1)
		h.c.log.Debug("invalidation bus resubscribed; local tiers flushed")
	}
	// Redis answers again: send what could not be sent, and load the
	// scripts (a restarted or new server has none).
	h.c.startReplay()
	h.c.loadScripts()
}

// spawn runs f on a goroutine that Close waits for, unless the Client is
// closing; it reports whether f was started.
func (c *Client) spawn(f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
	return true
}

func (c *Client) loadScripts() {
	c.spawn(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.WriteTimeout)
		defer cancel()
		if err := c.store.LoadScripts(ctx); err != nil {
			c.log.Debug("loading scripts failed; they load on first use", zap.Error(err))
		}
	})
}

func (h busHandler) Alive() {
	h.c.serveUntil.Store(h.c.clk.Precise() + int64(h.c.opts.BusTimeout))
}

func (h busHandler) Down(err error) {
	// Invalidations may be lost from now on: stop serving local entries at
	// once; the next subscription flushes and resumes.
	h.c.serveUntil.Store(0)
	if hk := h.c.hooks; hk != nil && hk.busDown != nil {
		hk.busDown()
	}
	h.c.warn.Warn("invalidation bus disconnected; serving from Redis until it is back", zap.Error(err))
}

func (h busHandler) Message(m *invalidation.Message) {
	c := h.c
	if c.hooks != nil && c.hooks.onMessage != nil {
		c.hooks.onMessage(m)
	}
	if m.Kind == invalidation.KindFlushAll {
		c.flushAll()
		c.applied.Add(1)
		return
	}
	s := c.space(m.Keyspace)
	if s == nil {
		c.unknown.Add(1) // another service's keyspace on a shared channel
		return
	}
	switch m.Kind {
	case invalidation.KindKeys:
		s.evict(m.Keys)
	case invalidation.KindBump:
		s.bump(m.Keys, m.Versions)
	case invalidation.KindFlush:
		s.flush()
		c.flushes.Add(1)
	}
	c.applied.Add(1)
}

// ClientStats are the Client-wide counters (the bus's).
type ClientStats struct {
	InvalidationsSent     uint64        // messages published by this Client
	InvalidationsReceived uint64        // messages read from the channel, own included
	InvalidationsApplied  uint64        // messages from peers acted upon
	IgnoredOwn            uint64        // this Client's own messages, ignored
	IgnoredMalformed      uint64        // foreign, malformed or future-version messages
	IgnoredUnknown        uint64        // messages for keyspaces this Client does not have
	Resubscriptions       uint64        // subscriptions after the first (each flushed the local tiers)
	Flushes               uint64        // local flushes of all keyspaces (resubscriptions, FlushLocal) or one
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
	}
	bs := c.br.Stats()
	s.BreakerState = c.br.State().String()
	s.BreakerOpens, s.BreakerRejected, s.Degraded = bs.Opens, bs.Rejected, bs.OpenTime
	c.replay.mu.Lock()
	s.ReplayQueued, s.Replayed, s.ReplayOverflows = c.replay.queued, c.replay.replayed, c.replay.overflows
	s.ReplayPending = c.replay.n + c.replay.inflight
	c.replay.mu.Unlock()
	if b.LastHealthyNano > 0 {
		s.SinceHealthy = time.Since(time.Unix(0, b.LastHealthyNano))
	}
	return s
}

// testHooks let tests stop the cache at exact points to force races.
type testHooks struct {
	hash            func(id string) uint64
	beforeLocalFill func(keyspace, id string) // after a Redis read, before the local fill
	beforeRedisFill func(keyspace, id string) // after a load, before the leased Redis fill
	onMessage       func(m *invalidation.Message)
	rand            func() float64 // XFetch's random draw
	busDown         func()         // in the bus goroutine, before it reconnects
}
