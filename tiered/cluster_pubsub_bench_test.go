package tiered

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// Invalidations on a Redis Cluster: plain Pub/Sub, what the bus uses,
// against sharded Pub/Sub (Redis 7). Redis forwards a PUBLISH, wherever it
// runs, over the cluster bus to every other node, replicas included, so a
// subscriber may sit on any node; an SPUBLISH reaches only the nodes of the
// shard that owns the channel's slot, and must run on its master.
//
// A go-redis v9.18 ClusterClient subscribes (SUBSCRIBE and SSUBSCRIBE) on
// the master of the channel's slot, and sends SPUBLISH there too, but it
// counts PUBLISH among keyless commands and sends it to the masters in
// turn (its ShardPicker, round-robin by default): "PUBLISH", what the bus
// does, runs on the subscriber's node one time in three. The
// "-owner-node" and "-other-node" cases pin it to one node to separate
// the two paths. The reply of a PUBLISH counts the subscribers of the node
// that ran it only: 0 on another node, though the message arrives.

// busWait bounds the wait for one message: Pub/Sub may lose it.
const busWait = 5 * time.Second

// slowBus is a delivery slow enough to count apart: on loopback a hop over
// the cluster bus stalls now and then for about 40ms, Linux's delayed-ACK
// timeout: most likely Nagle on the bus's outbound links, which lack
// TCP_NODELAY (valkey-io/valkey#1758, in the code Valkey forked from Redis).
const slowBus = 10 * time.Millisecond

// BenchmarkClusterBusPublish publishes b.N messages one at a time, each
// after the previous one arrived. Metrics: p50, p99 and max of the time
// from the reply of PUBLISH or SPUBLISH to the subscriber's goroutine
// holding the message (0 when it came first); send-p50 and send-p99, the
// same from before the call; early-%, the messages that came before the
// reply; local-%, the publishes that ran on the subscriber's node (their
// reply counted it); over-10ms, the messages that took longer than that.
func BenchmarkClusterBusPublish(b *testing.B) {
	cl := sharedCluster(b).cluster
	owner := cl.NodeForSlot(b, int(remote.Slot(defaultChannel)))
	var other string
	for _, m := range cl.Masters(b) {
		if m != owner {
			other = m
			break
		}
	}
	if other == "" {
		b.Fatalf("no master besides %s, the owner of %q", owner, defaultChannel)
	}
	clusterPub := func(b *testing.B) busPublish {
		pub := cl.Client(b)
		return func(ctx context.Context, payload string) (int64, error) {
			return pub.Publish(ctx, defaultChannel, payload).Result()
		}
	}
	nodePub := func(b *testing.B, addr string) busPublish {
		pub := cl.Node(addr).Client(b)
		return func(ctx context.Context, payload string) (int64, error) {
			return pub.Publish(ctx, defaultChannel, payload).Result()
		}
	}
	b.Run("PUBLISH", func(b *testing.B) { benchBus(b, cl, owner, false, clusterPub(b)) })
	b.Run("PUBLISH-owner-node", func(b *testing.B) { benchBus(b, cl, owner, false, nodePub(b, owner)) })
	b.Run("PUBLISH-other-node", func(b *testing.B) { benchBus(b, cl, owner, false, nodePub(b, other)) })
	b.Run("SPUBLISH", func(b *testing.B) {
		pub := cl.Client(b)
		benchBus(b, cl, owner, true, func(ctx context.Context, payload string) (int64, error) {
			return pub.SPublish(ctx, defaultChannel, payload).Result()
		})
	})
}

// busPublish sends payload on defaultChannel and returns the reply: how
// many subscribers the node that ran it has.
type busPublish func(ctx context.Context, payload string) (int64, error)

// benchBus subscribes a cluster client of its own to defaultChannel
// (SSUBSCRIBE when sharded), checks that its connection sits on owner,
// then times b.N messages sent with publish.
func benchBus(b *testing.B, cl *redistest.Cluster, owner string, sharded bool, publish busPublish) {
	ctx := context.Background()
	opts := cl.ClusterOptions()
	opts.ClientName = "bench-sub-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	sub := redis.NewClusterClient(opts)
	defer sub.Close()
	var ps *redis.PubSub
	if sharded {
		ps = sub.SSubscribe(ctx, defaultChannel)
	} else {
		ps = sub.Subscribe(ctx, defaultChannel)
	}
	defer ps.Close()
	if m, err := ps.Receive(ctx); err != nil {
		b.Fatalf("subscribe: %v", err)
	} else if _, ok := m.(*redis.Subscription); !ok {
		b.Fatalf("subscribe: got %T, want a confirmation", m)
	}
	if !namedOn(b, cl, owner, opts.ClientName) {
		b.Fatalf("the subscriber is not on %s, the master of %q's slot", owner, defaultChannel)
	}

	type arrival struct {
		seq int
		at  time.Time
	}
	got := make(chan arrival, 1)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return // ps closed
			}
			at := time.Now() // before anything else: this is the receipt
			seq, _ := strconv.Atoi(m.Payload)
			select {
			case got <- arrival{seq, at}:
			case <-quit:
				return
			}
		}
	}()
	defer func() { close(quit); _ = ps.Close(); <-done }()

	// send publishes seq and waits for it: the time from the reply and
	// from the call to the receipt, and whether the subscriber was local.
	send := func(seq int) (afterReply, afterCall time.Duration, local bool) {
		t0 := time.Now()
		n, err := publish(ctx, strconv.Itoa(seq))
		t1 := time.Now()
		if err != nil {
			b.Fatalf("publish %d: %v", seq, err)
		}
		if n > 1 {
			b.Fatalf("publish %d: %d subscribers, want at most 1", seq, n)
		}
		select {
		case a := <-got:
			if a.seq != seq {
				b.Fatalf("received message %d, want %d", a.seq, seq)
			}
			return max(0, a.at.Sub(t1)), a.at.Sub(t0), n == 1
		case <-time.After(busWait):
			b.Fatalf("message %d not received within %v", seq, busWait)
			return 0, 0, false
		}
	}
	const warmup = 100 // connections dialled, slot map loaded
	for i := 0; i < warmup; i++ {
		send(i)
	}

	lat := make([]time.Duration, 0, b.N)
	sendLat := make([]time.Duration, 0, b.N)
	early, local, slow := 0, 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		after, whole, here := send(warmup + i)
		if after == 0 {
			early++
		}
		if here {
			local++
		}
		if whole > slowBus {
			slow++
		}
		lat = append(lat, after)
		sendLat = append(sendLat, whole)
	}
	b.StopTimer()
	reportPercentiles(b, lat)
	slices.Sort(sendLat)
	b.ReportMetric(float64(sendLat[len(sendLat)/2].Nanoseconds())/1e3, "send-p50-µs")
	b.ReportMetric(float64(sendLat[len(sendLat)*99/100].Nanoseconds())/1e3, "send-p99-µs")
	b.ReportMetric(100*float64(early)/float64(b.N), "early-%")
	b.ReportMetric(100*float64(local)/float64(b.N), "local-%")
	b.ReportMetric(float64(slow), "over-10ms")
}

// namedOn reports whether node addr has a connection named name.
func namedOn(b *testing.B, cl *redistest.Cluster, addr, name string) bool {
	for _, c := range cl.Node(addr).ClientList(b) {
		if c["name"] == name {
			return true
		}
	}
	return false
}
