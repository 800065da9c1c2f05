package tiered

// What peers tell us over the bus, and what this process does about it:
// evict ids, raise group versions and epochs, flush keyspaces; and what the
// bus's own health means for serving the local tier (Alive extends how long
// it may be served, Down stops it at once, every subscription flushes).

import (
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
)

// busHandler adapts the Client to invalidation.Handler.
type busHandler struct{ c *Client }

func (h busHandler) Subscribed(first bool) {
	// Flush on the first subscription too: entries filled before it may
	// have missed invalidations published before we listened; epoch bumps
	// may have been missed as well.
	h.c.accepted("subscribe")
	h.c.forgetIncarnation()
	h.c.flushSpaces(true)
	if !first {
		h.c.resubs.Add(1)
		h.c.log.Debug("invalidation bus resubscribed; local tiers flushed")
	}
	// Redis answers again: send what could not be sent, and load the
	// scripts (a restarted or new server has none).
	h.c.startReplay()
	h.c.loadScripts()
}

func (h busHandler) Alive() {
	h.c.busAliveUntil.Store(int64(h.c.clock.Precise().Add(h.c.options.BusTimeout)))
	h.c.signalReady()
}

func (h busHandler) Down(err error) {
	// Invalidations may be lost from now on: stop serving local entries at
	// once; the next subscription flushes and resumes. The server may be
	// restarting: the next epoch read asks for its incarnation again.
	h.c.busAliveUntil.Store(0)
	h.c.forgetIncarnation()
	if hk := h.c.hooks; hk != nil && hk.busDown != nil {
		hk.busDown()
	}
	if remote.IsPermanent(err) {
		h.c.refused("subscribe", err)
		h.c.signalReady()
		return
	}
	h.c.warn.Warn("invalidation bus disconnected; serving from Redis until it is back", zap.Error(err))
}

func (h busHandler) Message(m *invalidation.Message) {
	c := h.c
	if c.hooks != nil && c.hooks.onMessage != nil {
		c.hooks.onMessage(m)
	}
	if m.Kind == invalidation.KindFlushAll {
		c.flushSpaces(false)
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
		s.raiseVersions(m.Keys, m.Versions)
	case invalidation.KindFlush:
		s.flush(false)
		c.flushes.Add(1)
	}
	c.applied.Add(1)
}

// serveUntil is the clock time until which local entries may be served:
// extended by every proof of life of the bus, cut on disconnect.
func (c *Client) serveUntil() clock.Time { return clock.Time(c.busAliveUntil.Load()) }

// flushSpaces flushes every keyspace; forgetEpochs also makes each read its
// epoch from Redis again (after a subscription or a Redis recovery, when a
// bump may have been missed).
func (c *Client) flushSpaces(forgetEpochs bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range c.spaces {
		s.flush(forgetEpochs)
	}
	c.flushes.Add(1)
}

// evict applies a peer's invalidation of ids.
func (k *Keyspace[V]) evict(ids []string) {
	for _, id := range ids {
		k.local.Delete(k.hash(id), id)
	}
	k.counters.peerInvalidations.Add(uint64(len(ids)))
}

// raiseVersions applies a peer's group version bumps (and epoch bumps, which travel
// as bumps of the empty group).
func (k *Keyspace[V]) raiseVersions(groups []string, vers []uint64) {
	expire := k.client.clock.Precise().Add(k.config.LocalTTL)
	for i, g := range groups {
		k.client.sawVersion(vers[i])
		if g == epochGroup {
			k.epoch.raise(vers[i])
			k.flush(false)
			k.learntEpoch(vers[i])
			continue
		}
		k.versions.raise(g, vers[i], expire)
		if k.config.Group != nil {
			k.learntVersion(g, vers[i])
		}
	}
}

// flush drops the local tier and the cached group versions (and, with
// forgetEpoch, the epoch). In-flight fills that started before it are
// refused (Purge advances every shard's generation).
func (k *Keyspace[V]) flush(forgetEpoch bool) {
	if forgetEpoch {
		k.epoch.forget()
	}
	k.versions.flush()
	k.local.Purge()
}
