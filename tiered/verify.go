package tiered

// The verifier: consistency measured in production, not only in tests
// (Meta's Polaris, Uber's Cache Inspector). A sample of hits (VerifyRate)
// is checked again after VerifyDelay: if the cache still serves what it
// served then, the source is asked what is true; when it disagrees, both are
// asked once more, another VerifyDelay later, and only if the cache still
// serves the same value and the source still disagrees is that an
// inconsistency, counted and logged.
// A race that resolves itself (a write in flight, the source written and
// the cache not yet) is not counted.

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
)

// verifyWorkers and verifyQueue bound the verifier of one keyspace.
const (
	verifyWorkers = 2
	verifyQueue   = 1024
)

// verifier holds the sampled hits of a keyspace waiting to be checked.
type verifier[V any] struct {
	rate float64
	jobs chan verifyJob[V]
}

// verifyJob is one sampled hit.
type verifyJob[V any] struct {
	id     string
	served loaded[V]
	at     time.Time
	loader loader[V]
}

// startVerifier starts the keyspace's verifier, when VerifyRate asks for
// one: its workers stop with the Client.
func (k *Keyspace[V]) startVerifier() {
	if k.config.VerifyRate <= 0 {
		return
	}
	k.verify = &verifier[V]{rate: k.config.VerifyRate, jobs: make(chan verifyJob[V], verifyQueue)}
	for i := 0; i < verifyWorkers; i++ {
		k.client.spawn(&task{what: "verifier", keyspace: k.config.Name}, func() {
			for {
				select {
				case <-k.client.ctx.Done():
					return
				case j := <-k.verify.jobs:
					k.check(j)
				}
			}
		})
	}
}

// sampleForVerify draws, for one hit, whether it is checked later. The hit path
// pays the nil check and, with a verifier, one draw.
func (k *Keyspace[V]) sampleForVerify(id string, l loaded[V], ld loader[V]) {
	if k.verify == nil || rand.Float64() >= k.verify.rate || !ld.exists() {
		return
	}
	select {
	case k.verify.jobs <- verifyJob[V]{id: id, served: l, at: time.Now(), loader: ld}:
	default:
		k.counters.verifyDropped.Add(1)
	}
}

// check verifies one sampled hit, after VerifyDelay.
func (k *Keyspace[V]) check(j verifyJob[V]) {
	if wait(k.client.ctx, time.Until(j.at.Add(k.config.VerifyDelay))) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(k.client.ctx, k.config.LoadTimeout)
	defer cancel()
	now, serving := k.servedNow(ctx, j.id)
	if !serving || !k.same(now, j.served) {
		k.counters.verified.Add(1) // the cache moved on: nothing to say
		return
	}
	truth, err := k.verifyLoad(ctx, j)
	if err != nil {
		return // the source cannot say: not a check
	}
	if k.same(truth, j.served) || k.notNewer(truth, j.served) {
		k.counters.verified.Add(1)
		return
	}
	// The source disagrees. A write may be in flight right now (the source
	// written, the cache not yet): look once more, a VerifyDelay later.
	if wait(k.client.ctx, k.config.VerifyDelay) != nil {
		return
	}
	if now, serving = k.servedNow(ctx, j.id); !serving || !k.same(now, j.served) {
		k.counters.verified.Add(1)
		return
	}
	if truth, err = k.verifyLoad(ctx, j); err != nil {
		return
	}
	k.counters.verified.Add(1)
	if k.same(truth, j.served) || k.notNewer(truth, j.served) {
		return // the source came back to what the cache serves
	}
	k.counters.inconsistent.Add(1)
	k.client.warn.Warn("the cache serves a value the source no longer has (Config.VerifyRate)",
		zap.String("key", keys.Key(k.config.Name, j.id)), zap.Duration("age", time.Since(j.at)), zap.Bool("negative", j.served.negative))
}

// servedNow is what a Get of id would answer now without loading: the
// local tier's fresh value, else Redis's. serving is false when neither
// holds one.
func (k *Keyspace[V]) servedNow(ctx context.Context, id string) (loaded[V], bool) {
	now := k.client.clock.Now()
	if e := k.local.Peek(k.hash(id), id, int64(now)); e != nil && now < e.freshUntil && now < k.client.serveUntil() && k.versionCurrent(id, e, now) {
		return loaded[V]{value: e.value, negative: e.negative}, true
	}
	m, err := k.resolve(ctx, id)
	if err != nil {
		return loaded[V]{}, false
	}
	raw, found, err := k.client.store.Get(ctx, m.key)
	if err != nil || !found {
		return loaded[V]{}, false
	}
	v, err := k.decode(m, raw)
	if err != nil || v.expiry <= k.client.clock.Precise() {
		return loaded[V]{}, false // stale is not what a hit serves
	}
	return v.loaded, true
}

// verifyingKey marks the context of the verifier's loads.
type verifyingKey struct{}

// Verifying reports whether ctx is that of a load the verifier makes
// (Config.VerifyRate): a Loader may then read from the primary rather than
// a lagging replica, or leave the call out of its own metrics.
func Verifying(ctx context.Context) bool {
	return ctx.Value(verifyingKey{}) != nil
}

// verifyLoad asks the source, without caching what it says.
func (k *Keyspace[V]) verifyLoad(ctx context.Context, j verifyJob[V]) (loaded[V], error) {
	k.counters.verifyLoads.Add(1)
	ctx = context.WithValue(ctx, verifyingKey{}, true)
	m := &miss[V]{id: j.id}
	k.callLoader(ctx, j.loader, m)
	if errors.Is(m.err, ErrNotFound) {
		return loaded[V]{negative: true}, nil
	}
	return m.result, m.err
}

// same reports whether two results are the same value (Config.Equal, or the
// codec's encodings byte for byte).
func (k *Keyspace[V]) same(a, b loaded[V]) bool {
	if a.negative || b.negative {
		return a.negative == b.negative
	}
	if k.config.Equal != nil {
		return k.config.Equal(a.value, b.value)
	}
	ea, err1 := k.config.Codec.Marshal(a.value)
	eb, err2 := k.config.Codec.Marshal(b.value)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// notNewer reports, with VersionOf, that the source's value is no newer
// than the one served (a replica lagging behind the cache is not an
// inconsistency of the cache).
func (k *Keyspace[V]) notNewer(truth, served loaded[V]) bool {
	if k.config.VersionOf == nil || truth.negative || served.negative {
		return false
	}
	return k.config.VersionOf(truth.value) <= k.config.VersionOf(served.value)
}
