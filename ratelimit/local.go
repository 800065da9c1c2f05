package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// The local state decides limits in this process alone while Redis cannot
// be asked (FailLocal). While Redis answers, every request Redis allows is
// also counted here, so that a switch to local decisions gives this process
// no fresh budget: one process alone never exceeds a limit, outage or not.
//
// Its memory is bounded: at most localKeys keys (64 Ki by default, a few
// hundred bytes each), in shards with a lock each. A full shard makes room
// by sampling a few of its keys: those whose state is back to fresh go
// (forgetting them changes nothing), else the one closest to fresh.

const (
	localShards = 64
	evictSample = 8
)

// localState is one key's state under one algorithm. take decides a
// request of n at now; force counts it even if it does not fit (Redis
// allowed it). until is when the state becomes equivalent to a fresh one.
type localState interface {
	take(now instant, l Limit, n int, force bool) Result
	until() instant
}

type localStore struct {
	seed       maphash.Seed
	origin     time.Time // read with its monotonic clock
	originWall instant   // origin on the wall clock
	perShard   int
	shards     [localShards]localShard
}

type localShard struct {
	mu     sync.Mutex
	states map[string]localState // by Redis key: one per key and algorithm
}

func newLocalStore(maxKeys int) *localStore {
	s := &localStore{seed: maphash.MakeSeed(), origin: time.Now()}
	s.originWall = instant(s.origin.UnixNano())
	s.perShard = max(maxKeys/localShards, 1)
	for i := range s.shards {
		s.shards[i].states = make(map[string]localState)
	}
	return s
}

// now reads the local clock: the wall clock at the store's start,
// advanced by the monotonic clock since. Windows align with Redis's (as
// far as the clocks agree) and a step of the wall clock moves no limit.
func (s *localStore) now() instant {
	return s.originWall.add(time.Since(s.origin))
}

func (s *localStore) shard(redisKey string) *localShard {
	return &s.shards[maphash.String(s.seed, redisKey)%localShards]
}

// take decides req at now in the local state (see localState.take).
func (s *localStore) take(req request, now instant, force bool) Result {
	sh := s.shard(req.redisKey)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.states[req.redisKey]
	if st == nil {
		st = newLocalState(req.limit.Algorithm)
		if req.n == 0 { // a peek at a fresh key: nothing to keep
			return st.take(now, req.limit, 0, false)
		}
		if len(sh.states) >= s.perShard {
			sh.evict(now)
		}
		sh.states[req.redisKey] = st
	}
	return st.take(now, req.limit, req.n, force)
}

// forget drops a key's state (Reset).
func (s *localStore) forget(redisKey string) {
	sh := s.shard(redisKey)
	sh.mu.Lock()
	delete(sh.states, redisKey)
	sh.mu.Unlock()
}

// len returns the number of keys held.
func (s *localStore) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.states)
		sh.mu.Unlock()
	}
	return n
}

// evict makes room for one key: it drops the sampled keys that are back to
// fresh, or else the sampled key closest to fresh. Map iteration starts at
// a random place, so the sample is random. sh.mu must be held.
func (sh *localShard) evict(now instant) {
	var oldest string
	var oldestUntil instant
	seen, dropped := 0, 0
	for k, st := range sh.states {
		switch u := st.until(); {
		case u <= now:
			delete(sh.states, k)
			dropped++
		case oldest == "" || u < oldestUntil:
			oldest, oldestUntil = k, u
		}
		if seen++; seen == evictSample {
			break
		}
	}
	if dropped == 0 && oldest != "" {
		delete(sh.states, oldest)
	}
}
