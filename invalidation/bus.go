package invalidation

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Handler receives what the bus sees. The bus calls it from its one
// goroutine, in order; a slow handler slows the bus (and Redis disconnects a
// subscriber that falls too far behind, which the bus then sees as a
// resubscription).
type Handler interface {
	// Subscribed is called on every subscription confirmation: first is true
	// for the first one. Messages may have been lost before any of them
	// (Pub/Sub is at-most-once), so the handler flushes what it caches.
	Subscribed(first bool)
	// Alive is called whenever the connection proves to be working (a
	// message, a pong, a subscription), after Subscribed and before Message.
	Alive()
	// Message is called for each well-formed message from another node.
	Message(m *Message)
	// Down is called when the connection fails or stops answering pings.
	Down(err error)
}

// BusOptions configures a Bus.
type BusOptions struct {
	// PingEvery is how often an idle bus pings Redis. Default 250ms.
	PingEvery time.Duration
	// DeadAfter is how long the bus waits for any data (a pong included)
	// before it drops the connection and subscribes anew. Default 4*PingEvery.
	DeadAfter time.Duration
}

// BusStats counts what the bus saw.
type BusStats struct {
	Received        uint64 // messages read from the channel
	Own             uint64 // messages from this node, ignored
	Malformed       uint64 // foreign, future-version or malformed messages, ignored
	Subscriptions   uint64 // subscription confirmations, the first included
	Disconnects     uint64 // connection failures and dead connections seen
	LastHealthyNano int64  // time.Now().UnixNano() of the last proof of life
}

// Bus is one subscriber connection on one channel. It decodes messages,
// drops its own node's, and reports everything else to a Handler.
type Bus struct {
	rdb     redis.UniversalClient
	channel string
	node    NodeID
	h       Handler
	opt     BusOptions

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex    // guards ps
	ps *redis.PubSub // the current subscription, closed by Close to end a blocked read

	received, own, malformed, subs, downs atomic.Uint64
	lastHealthy                           atomic.Int64
}

// NewBus starts a bus. Close stops it.
func NewBus(rdb redis.UniversalClient, channel string, node NodeID, h Handler, opt BusOptions) *Bus {
	if opt.PingEvery <= 0 {
		opt.PingEvery = 250 * time.Millisecond
	}
	if opt.DeadAfter <= 0 {
		opt.DeadAfter = 4 * opt.PingEvery
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{rdb: rdb, channel: channel, node: node, h: h, opt: opt, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go b.run()
	return b
}

// Close stops the bus and waits for its goroutine. It is idempotent.
func (b *Bus) Close() {
	b.cancel()
	b.mu.Lock()
	if b.ps != nil {
		_ = b.ps.Close() // ends a read blocked until the next ping
	}
	b.mu.Unlock()
	<-b.done
}

// Stats returns the bus counters.
func (b *Bus) Stats() BusStats {
	return BusStats{
		Received:        b.received.Load(),
		Own:             b.own.Load(),
		Malformed:       b.malformed.Load(),
		Subscriptions:   b.subs.Load(),
		Disconnects:     b.downs.Load(),
		LastHealthyNano: b.lastHealthy.Load(),
	}
}

// errDead reports a connection that answered nothing for DeadAfter.
var errDead = errors.New("tiercache: invalidation bus connection answered nothing in time")

func (b *Bus) run() {
	defer close(b.done)
	first := true
	backoff := time.Duration(0)
	for b.ctx.Err() == nil {
		// A fresh PubSub for every connection life: go-redis reconnects a
		// PubSub by itself after errors, but a connection that is silently
		// dead (no error, no data) can only be replaced.
		ps := b.rdb.Subscribe(b.ctx, b.channel)
		b.mu.Lock()
		b.ps = ps
		b.mu.Unlock()
		err := b.serve(ps, &first, &backoff)
		b.mu.Lock()
		b.ps = nil
		b.mu.Unlock()
		_ = ps.Close()
		if b.ctx.Err() != nil {
			return
		}
		b.downs.Add(1)
		if cc, ok := b.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(b.ctx) // the channel's master may have failed over (go-redis #3979)
		}
		b.h.Down(err)
		backoff = nextBackoff(backoff)
		t := time.NewTimer(backoff)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 10 * time.Millisecond
	case d >= 500*time.Millisecond:
		return time.Second
	}
	return 2 * d
}

// serve reads from one PubSub until it fails or stops answering.
func (b *Bus) serve(ps *redis.PubSub, first *bool, backoff *time.Duration) error {
	lastData := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(b.ctx, b.opt.PingEvery)
		if err != nil {
			if b.ctx.Err() != nil {
				return b.ctx.Err()
			}
			if !isTimeout(err) {
				return err
			}
			if time.Since(lastData) >= b.opt.DeadAfter {
				return errDead
			}
			if err := ps.Ping(b.ctx); err != nil {
				return err
			}
			continue
		}
		lastData = time.Now()
		*backoff = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			b.subs.Add(1)
			b.h.Subscribed(*first)
			*first = false
			b.alive()
		case *redis.Pong:
			b.alive()
		case *redis.Message:
			b.alive()
			b.deliver(m.Payload)
		}
	}
}

func (b *Bus) alive() {
	b.lastHealthy.Store(time.Now().UnixNano())
	b.h.Alive()
}

func (b *Bus) deliver(payload string) {
	b.received.Add(1)
	// Decode copies what it keeps, so viewing the payload without a copy is safe.
	m, err := Decode(unsafe.Slice(unsafe.StringData(payload), len(payload)))
	if err != nil {
		b.malformed.Add(1)
		return
	}
	if m.Node == b.node {
		b.own.Add(1)
		return
	}
	b.h.Message(&m)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Publisher caches nothing; it is the encoding side of the bus, kept beside
// the subscriber so both agree on the node id.
type Publisher struct {
	Node NodeID
}

// KeysMessage encodes an eviction of ids in keyspace, split under
// MaxMessageSize.
func (p Publisher) KeysMessage(keyspace string, ids []string) ([][]byte, error) {
	return Split(&Message{Node: p.Node, Kind: KindKeys, Keyspace: keyspace, Keys: ids}, 0)
}

// BumpPrefix encodes a one-group bump message without its trailing version
// uvarint, for a script that appends the version it assigns.
func (p Publisher) BumpPrefix(keyspace, group string) ([]byte, error) {
	b, err := Encode(nil, &Message{Node: p.Node, Kind: KindBump, Keyspace: keyspace, Keys: []string{group}, Versions: []uint64{0}})
	if err != nil {
		return nil, err
	}
	// The version 0 encodes as the single byte 0x00 at the very end.
	return b[:len(b)-1], nil
}

// FlushMessage encodes a flush of one keyspace, or of every keyspace when
// keyspace is empty.
func (p Publisher) FlushMessage(keyspace string) ([]byte, error) {
	k := KindFlush
	if keyspace == "" {
		k = KindFlushAll
	}
	return Encode(nil, &Message{Node: p.Node, Kind: k, Keyspace: keyspace})
}
