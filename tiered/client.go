package tiered

// The Client: what every keyspace of a process shares (the Redis tier, the
// invalidation bus, the clock, the logger, background work), its lifetime
// and its registry of keyspaces.

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
	options   Options
	store     *remote.Store
	log       *zap.Logger // debug events and state transitions
	warn      *zap.Logger // warnings, sampled: at most one per message per second
	clock     *clock.Coarse
	publisher invalidation.Publisher
	bus       *invalidation.Bus
	breaker   *breaker.Breaker

	// busAliveUntil is the clock.Time until which local entries may be
	// served (see serveUntil).
	busAliveUntil atomic.Int64

	ctx    context.Context // cancelled by Close; parent of shared loads
	cancel context.CancelFunc
	closed atomic.Bool
	close  sync.Once
	bgMu   sync.Mutex     // orders spawn against Close; guards tasks
	bg     sync.WaitGroup // everything spawned: refresh workers, loads, replays
	tasks  map[*task]struct{}

	mu     sync.RWMutex
	spaces map[string]space

	leaseSeq atomic.Uint64
	refreshQ chan func(context.Context)
	replay   replayQueue
	server   serverView

	permanent atomic.Pointer[PermanentError] // see Err
	readyCh   atomic.Pointer[chan struct{}]  // see WaitReady

	sent, applied, unknown, flushes, resubs, rewinds atomic.Uint64

	hooks *testHooks // nil outside tests
}

// space is what the Client needs of a Keyspace[V], whatever V.
type space interface {
	evict(ids []string)
	raiseVersions(groups []string, versions []uint64)
	flush(forgetEpoch bool)
	replay(ctx context.Context, r replayItems) int
	stats() Stats
	renewEpoch(ctx context.Context)
	loadTimeout() time.Duration
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
		options:   opts,
		log:       opts.Logger.Named("tiercache"),
		clock:     clock.NewCoarse(time.Millisecond),
		publisher: invalidation.Publisher{Node: node},
		ctx:       ctx,
		cancel:    cancel,
		spaces:    make(map[string]space),
		tasks:     make(map[*task]struct{}),
		hooks:     opts.hooks,
	}
	c.replay.max = opts.ReplayQueue
	c.breaker = c.newBreaker()
	c.store = remote.NewStore(opts.Redis, remote.Options{
		Guard: c.breaker, Channel: opts.Channel, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout, Wall: c.wall,
	})
	c.warn = c.log.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(core, time.Second, 1, 0)
	}))
	if !c.store.HonoursDeadlines() {
		c.log.Warn("the go-redis client ignores context deadlines (ContextTimeoutEnabled is off): " +
			"ReadTimeout and WriteTimeout are enforced with a goroutine per Redis call, about 3x the cost of a Redis hit; set ContextTimeoutEnabled: true in the go-redis options")
	}
	c.startRefreshers()
	c.watchServer()
	c.bus = invalidation.NewBus(opts.Redis, opts.Channel, node, busHandler{c}, invalidation.BusOptions{PingEvery: opts.BusTimeout / 4})
	return c, nil
}

// Close stops the bus, the clock and all background work, and waits for
// them: at most the largest LoadTimeout of its keyspaces plus a second, since
// a Loader that ignores its context cannot be stopped (what is abandoned is
// logged at Warn). It does not close the Redis client. Calls made after
// Close return ErrClosed; Close is idempotent and safe to call
// concurrently.
func (c *Client) Close() error {
	c.close.Do(func() {
		c.bgMu.Lock()
		c.closed.Store(true)
		c.bgMu.Unlock()
		c.busAliveUntil.Store(0)
		c.cancel()
		c.bus.Close()
		c.waitBackground()
		c.clock.Stop()
	})
	return nil
}

// Node returns this Client's random node id (hex), the origin of the
// invalidations it publishes.
func (c *Client) Node() string { return c.publisher.Node.String() }

// Ready reports whether the bus is subscribed and healthy, i.e. whether the
// local tier is being served.
func (c *Client) Ready() bool { return c.clock.Precise() < c.serveUntil() }

// WaitReady blocks until the bus is subscribed and healthy (Ready), and
// returns nil; or returns ctx's error when ctx ends first, ErrClosed when the
// Client closes, and the PermanentError at once when Redis refuses the
// subscription (an ACL without the channel).
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		ch := c.readySignal()
		switch {
		case c.Ready():
			return nil
		case c.closed.Load():
			return ErrClosed
		}
		if p := c.permanent.Load(); p != nil && p.Op == "subscribe" {
			return p
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
	}
}

// readySignal returns a channel closed at the bus's next sign of life (or
// refusal).
func (c *Client) readySignal() <-chan struct{} {
	for {
		if p := c.readyCh.Load(); p != nil {
			return *p
		}
		ch := make(chan struct{})
		if c.readyCh.CompareAndSwap(nil, &ch) {
			return ch
		}
	}
}

// signalReady wakes WaitReady's callers.
func (c *Client) signalReady() {
	if c.readyCh.Load() != nil {
		if p := c.readyCh.Swap(nil); p != nil {
			close(*p)
		}
	}
}

// FlushLocal drops every local entry of every keyspace in every process
// sharing the channel; Redis is left as it is.
func (c *Client) FlushLocal(ctx context.Context) error {
	c.flushSpaces(false)
	msg, err := c.publisher.FlushMessage("")
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
	if err := c.store.Publish(ctx, msg); err != nil {
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

// leaseToken returns a token no other lease holder anywhere uses: this
// node's random id and a counter.
func (c *Client) leaseToken() string {
	var b [24]byte
	copy(b[:16], c.publisher.Node[:])
	binary.BigEndian.PutUint64(b[16:], c.leaseSeq.Add(1))
	return string(b[:])
}

// loadCtx is the context of a load shared by several callers: it keeps the
// first caller's values but not its cancellation, ends after d, and ends
// when the Client closes.
func (c *Client) loadCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	stop := context.AfterFunc(c.ctx, cancel)
	return lctx, func() { stop(); cancel() }
}

// task names what a goroutine of spawn does, for Close to say what it
// abandoned.
type task struct {
	what, keyspace, id string
}

func (t *task) String() string {
	if t.keyspace == "" {
		return t.what
	}
	return t.what + " " + t.keyspace + "/" + t.id
}

// spawn runs f on a goroutine that Close waits for, unless the Client is
// closing; it reports whether f was started.
func (c *Client) spawn(t *task, f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.bg.Add(1)
	c.tasks[t] = struct{}{}
	go func() {
		defer func() {
			c.bgMu.Lock()
			delete(c.tasks, t)
			c.bgMu.Unlock()
			c.bg.Done()
		}()
		f()
	}()
	return true
}

// Close waits this long for what it started beyond the largest LoadTimeout
// of its keyspaces: loads are cancelled at once, and a Loader that honours
// its context returns well within it.
const closeMargin = time.Second

// waitBackground waits for everything spawn started, at most the largest
// LoadTimeout of the keyspaces plus closeMargin, and logs what it abandoned
// (Loaders that ignore their context).
func (c *Client) waitBackground() {
	done := make(chan struct{})
	go func() {
		c.bg.Wait()
		close(done)
	}()
	bound := closeMargin
	c.mu.RLock()
	for _, s := range c.spaces {
		bound = max(bound, s.loadTimeout()+closeMargin)
	}
	c.mu.RUnlock()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	c.bgMu.Lock()
	var left []string
	for t := range c.tasks {
		if len(left) < 10 {
			left = append(left, t.String())
		}
	}
	n := len(c.tasks)
	c.bgMu.Unlock()
	c.log.Warn("Close gave up waiting for background work (a Loader that ignores its context?); it goes on unsupervised",
		zap.Duration("waited", bound), zap.Int("tasks", n), zap.Strings("some", left))
}

func (c *Client) loadScripts() {
	c.spawn(&task{what: "load scripts"}, func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.options.WriteTimeout)
		defer cancel()
		if err := c.store.LoadScripts(ctx); err != nil {
			c.log.Debug("loading scripts failed; they load on first use", zap.Error(err))
		}
	})
}

// redisError counts a failed Redis call of a keyspace and logs it
// (rate-limited).
func (k *Keyspace[V]) redisError(op, key string, err error) {
	k.counters.redisErrors.Add(1)
	k.client.warn.Warn("redis "+op+" failed; serving from the loader", zap.String("key", key), zap.Error(err))
}

// testHooks let tests stop the cache at exact points to force races.
type testHooks struct {
	hash            func(id string) uint64
	beforeLocalFill func(keyspace, id string) // after a Redis read or fill, before the local fill
	beforeRedisFill func(keyspace, id string) // after a load, before the leased Redis fill
	onMessage       func(m *invalidation.Message)
	rand            func() float64 // XFetch's random draw
	busDown         func()         // in the bus goroutine, before it reconnects
	wallSkew        time.Duration  // added to this host's wall clock
}
