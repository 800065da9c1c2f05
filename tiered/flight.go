package tiered

// Coalescing of concurrent misses of one id in one process.

import (
	"sync"
	"sync/atomic"
)

// flights coalesces concurrent misses of one id in one process. Unlike
// x/sync's singleflight.DoChan, the leader does the first step, the Redis
// read, on its own goroutine: a Redis hit costs no goroutine hand-off, which
// on a busy machine is tens of microseconds. Only a load is handed to a
// goroutine of its own, so that no caller waits for it past its context.
type flights[V any] struct {
	mu sync.Mutex
	m  map[string]*flight[V]
}

type flight[V any] struct {
	done    chan struct{}
	result  loaded[V]
	err     error
	outcome outcome
	// stale is a value the StaleIfError window lets a caller serve once
	// SoftLoadTimeout passed, as the leader's Redis read found it.
	stale atomic.Pointer[loaded[V]]
}

// join returns the flight for id and whether the caller leads it.
func (fs *flights[V]) join(id string) (*flight[V], bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[id]; ok {
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight[V])
	}
	f := &flight[V]{done: make(chan struct{})}
	fs.m[id] = f
	return f, true
}

// land ends the flight with m's answer and wakes every follower.
func (fs *flights[V]) land(f *flight[V], m *miss[V]) {
	fs.mu.Lock()
	delete(fs.m, m.id)
	fs.mu.Unlock()
	f.result, f.err, f.outcome = m.result, m.err, m.outcome
	close(f.done)
}
