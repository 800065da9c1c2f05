package tiered

import "sync"

// versions caches the current version of each group of a keyspace. Versions
// only grow (see remote's version scripts), so a bump that arrives out of
// order with a read can be merged with max. A flush clears the cache and
// advances gen, so that a read of a version that started before the flush
// cannot land after it.
type versions struct {
	mu  sync.RWMutex
	m   map[string]verEntry
	gen uint64
}

type verEntry struct {
	ver    uint64
	expire int64 // clock time; a cached version is served for LocalTTL at most
}

func (vs *versions) get(group string, now int64) (uint64, bool) {
	vs.mu.RLock()
	e, ok := vs.m[group]
	vs.mu.RUnlock()
	if !ok || now >= e.expire {
		return 0, false
	}
	return e.ver, true
}

func (vs *versions) token() uint64 {
	vs.mu.RLock()
	defer vs.mu.RUnlock()
	return vs.gen
}

// fill stores a version read from Redis unless a flush came in between.
func (vs *versions) fill(group string, ver uint64, expire int64, tok uint64) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.gen != tok {
		return
	}
	vs.raiseLocked(group, ver, expire)
}

// raise merges a version learnt from a bump.
func (vs *versions) raise(group string, ver uint64, expire int64) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.raiseLocked(group, ver, expire)
}

func (vs *versions) raiseLocked(group string, ver uint64, expire int64) {
	if vs.m == nil {
		vs.m = make(map[string]verEntry)
	}
	if e, ok := vs.m[group]; ok && e.ver > ver {
		return
	}
	vs.m[group] = verEntry{ver: ver, expire: expire}
}

func (vs *versions) flush() {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.gen++
	clear(vs.m)
}
