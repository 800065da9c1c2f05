package tiered

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

// The chaos soak. Several Clients, each with its own connections, two of
// them in child processes of the test binary, run a random Get / Set /
// Delete / InvalidateGroup workload on 50 ids in 5 groups while a fault
// injector kills and restarts the cache's redis-server, restarts it from an
// older snapshot, evicts keys (metadata among them) under memory pressure,
// kills the subscriber connections, pauses Redis and slows the loaders; a few calls
// come from impatient callers whose deadline passes mid-call
// (-soak.impatient). A checker then counts what the README promises never
// happens:
//
//   - stale reads: a Get returned a value older than a write that completed
//     more than LocalTTL before the Get started;
//   - errors: a Get with a Loader returned an error (ErrNotFound for a
//     deleted id is an answer, not an error);
//   - lost writes: once faults stop and the Clients settle, a Get on some
//     Client does not converge, within LocalTTL and some slack, to the
//     database's last state of an id;
//   - unsettled Clients: after the run, a Client still owes invalidations
//     of failed writes (queued, never replayed);
//   - leaked goroutines once the soak's Clients are closed.
//
// The database is a second redis-server that no fault touches, so that
// every process shares it: "db:<id>" holds "<version>:<writer>" (absent
// when deleted), "ver:<id>" the version counter, "lock:<id>" a row lock,
// "hist:<id>" the write history (version -> "set|del,dbAt,done,failed,
// writer", times in Unix µs) and "soak:slow" the slow-loader flag. A writer
// does what a service does: it locks the row and writes the database
// (version++), then calls Set or Delete on the cache, then unlocks. The row
// lock matters: two unordered writers of one row could leave the cache with
// the older value forever, a race of the application, not of the cache.
//
// Writes whose cache call failed. The database has the new version but the
// cache may not (Redis down, or the breaker open): the library queues the
// invalidation and replays it when Redis is back. Such a write cannot bound
// staleness from its own return, so its completion is taken as the moment
// its Client was next seen owing nothing: replay queue empty and no replay
// running, in a look taken wholly after the write failed (see
// soakReplayIdle for why ClientStats cannot tell). Reads are then judged
// against it LocalTTL after that moment, like any other write.
//
// Persistence: the cache server runs with AOF (appendfsync always), so a
// restart brings back the values of before the crash. That is the harder
// case: values written or deleted in the database during the outage come
// back in Redis, and only the replayed invalidations remove them.
//
// The short soak runs in the default `go test ./...` (15s); the long one is
// `go test -run TestSoak ./tiered -soak.duration 5m`.

var (
	soakDuration = flag.Duration("soak.duration", 15*time.Second,
		"how long TestSoak's workload runs under faults (a long soak: -soak.duration 5m)")
	soakFaultsOn = flag.Bool("soak.faults", true,
		"inject faults (false: the same workload without faults, to compare throughput)")
	soakImpatient = flag.Float64("soak.impatient", 0.05,
		"fraction of TestSoak's cache calls made by impatient callers, whose deadline (0-2ms) may pass during the call")
)

const (
	soakIDs           = 50
	soakHotIDs        = 10 // ids 0-9 take most writes
	soakGroups        = 5
	soakTTL           = 30 * time.Second
	soakLocalTTL      = 2 * time.Second
	soakNegativeTTL   = 5 * time.Second
	soakParentClients = 3
	soakChildren      = 2 // child processes, one Client each
	soakWorkers       = 3 // goroutines per Client
	soakPace          = 3 * time.Millisecond
	soakSettleWithin  = 15 * time.Second
	soakConvergeSlack = 3 * time.Second
	soakChildEnv      = "TIERCACHE_SOAK_CHILD"
	soakLine          = "soak-child "
	soakSlowKey       = "soak:slow"
)

// soakWriteScript locks a row (NX, for 10s at most should its writer die),
// bumps its version and writes or deletes it. It returns the new version,
// or -1 when another writer holds the row.
//
// KEYS lock, version, row; ARGV token, "set" or "del", writer
var soakWriteScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 10000) then return -1 end
local v = redis.call('INCR', KEYS[2])
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[3], v .. ':' .. ARGV[3])
else
  redis.call('DEL', KEYS[3])
end
return v
`)

var soakUnlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func soakGroup(id string) string {
	n, _ := strconv.Atoi(id)
	return "g" + strconv.Itoa(n%soakGroups)
}

// soakLoad is the Loader: it reads the row and, while the slow-loader fault
// is on, waits 50-200ms after the read (the dangerous order: the value is
// already old when it reaches the cache).
func soakLoad(db *redis.Client) func(ctx context.Context, id string) (user, error) {
	return func(ctx context.Context, id string) (user, error) {
		vals, err := db.MGet(ctx, "db:"+id, soakSlowKey).Result()
		if err != nil {
			return user{}, err
		}
		if vals[1] != nil {
			if err := wait(ctx, time.Duration(50+rand.Intn(151))*time.Millisecond); err != nil {
				return user{}, err
			}
		}
		row, ok := vals[0].(string)
		if !ok {
			return user{}, ErrNotFound
		}
		ver, writer, _ := strings.Cut(row, ":")
		v, err := strconv.Atoi(ver)
		if err != nil {
			return user{}, fmt.Errorf("row %q: %w", row, err)
		}
		return user{ID: id, Name: writer, Ver: v}, nil
	}
}

// soakRead is one Get: times in Unix µs; ver is the version returned, 0 for
// ErrNotFound, -1 for an error.
type soakRead struct {
	id         int
	client     int
	start, end int64
	ver        int64
	gotID      string
}

// soakWrite is one database write and the cache call that followed it.
type soakWrite struct {
	id     int
	client int
	ver    int64
	del    bool
	dbAt   int64 // just before the database write
	done   int64 // the cache call returned; for a failed one, its Client next owed nothing
	failed bool
	writer string
	err    string // the cache call's error (this process's writes only)
}

// soakSettle records the looks at one Client that found it owing no
// invalidation (soakReplayIdle), as [start, end] in Unix µs.
type soakSettle struct {
	mu          sync.Mutex
	starts, end []int64
}

// soakReplayIdle reports whether c owes no invalidation: none queued and no
// replay running. ClientStats cannot tell: ReplayPending is 0 while a replay
// is in flight, and ReplayQueued counts an id once more each time a replay
// attempt fails, so it does not balance Replayed after one.
func soakReplayIdle(c *Client) bool {
	q := &c.replay
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.emptyLocked() && !q.running
}

func soakReplayRunning(c *Client) bool {
	c.replay.mu.Lock()
	defer c.replay.mu.Unlock()
	return c.replay.running
}

func (w *soakSettle) poll(c *Client, stop <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st := time.Now().UnixMicro()
		idle := soakReplayIdle(c)
		en := time.Now().UnixMicro()
		if idle {
			w.mu.Lock()
			w.starts, w.end = append(w.starts, st), append(w.end, en)
			w.mu.Unlock()
		}
	}
}

// after returns when the first idle look taken wholly after t ended,
// or MaxInt64 if none was.
func (w *soakSettle) after(t int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.starts), func(i int) bool { return w.starts[i] > t })
	if i == len(w.starts) {
		return math.MaxInt64
	}
	return w.end[i]
}

type soakClient struct {
	idx    int
	rdb    *redis.Client
	c      *Client
	k      *Keyspace[user]
	settle soakSettle
}

// soakResult is what one process reports (a child as one JSON line).
type soakResult struct {
	Ops        int `json:"ops"`
	Reads      int `json:"reads"`
	Writes     int `json:"writes"`
	WriteFails int `json:"write_fails"`
	LockSkips  int `json:"lock_skips"`
	Groups     int `json:"groups"`
	Stale      int `json:"stale"`
	Errors     int `json:"errors"`
	Lost       int `json:"lost"`
	Leaked     int `json:"leaked"`
	Unsettled  int `json:"unsettled"` // Clients still owing invalidations after the run
	Cancelled  int `json:"cancelled"` // Gets whose impatient caller gave up
	// What the library did, to see that the faults bit.
	Loads        uint64   `json:"loads"`
	FillsRefused uint64   `json:"fills_refused"`
	LoaderDirect uint64   `json:"loader_direct"`
	RedisErrors  uint64   `json:"redis_errors"`
	BreakerOpens uint64   `json:"breaker_opens"`
	Resubs       uint64   `json:"resubs"`
	Replayed     uint64   `json:"replayed"`
	Verified     uint64   `json:"verified"`
	Inconsistent uint64   `json:"inconsistent"`
	Notes        []string `json:"notes,omitempty"` // what went wrong, for the log
}

// note keeps the first ten notes of each kind.
func (r *soakResult) note(kind, format string, args ...any) {
	n := 0
	for _, s := range r.Notes {
		if strings.HasPrefix(s, kind+": ") {
			n++
		}
	}
	if n < 10 {
		r.Notes = append(r.Notes, kind+": "+fmt.Sprintf(format, args...))
	}
}

func (r *soakResult) add(o soakResult) {
	r.Ops += o.Ops
	r.Reads += o.Reads
	r.Writes += o.Writes
	r.WriteFails += o.WriteFails
	r.LockSkips += o.LockSkips
	r.Groups += o.Groups
	r.Stale += o.Stale
	r.Errors += o.Errors
	r.Lost += o.Lost
	r.Leaked += o.Leaked
	r.Unsettled += o.Unsettled
	r.Cancelled += o.Cancelled
	r.Loads += o.Loads
	r.FillsRefused += o.FillsRefused
	r.LoaderDirect += o.LoaderDirect
	r.RedisErrors += o.RedisErrors
	r.BreakerOpens += o.BreakerOpens
	r.Resubs += o.Resubs
	r.Replayed += o.Replayed
	r.Verified += o.Verified
	r.Inconsistent += o.Inconsistent
	r.Notes = append(r.Notes, o.Notes...)
}

// soakProc is the workload of one OS process: its Clients, their workers
// and what they saw.
type soakProc struct {
	name      string
	seed      int64
	impatient float64 // fraction of impatient calls
	db        *redis.Client
	clients   []*soakClient
	start     int64 // Unix µs the run started, for readable notes

	stop   chan struct{} // ends the settle pollers
	polls  sync.WaitGroup
	reads  []soakRead
	writes []soakWrite
	res    soakResult
}

func newSoakProc(name string, seed int64, impatient float64, cacheAddr, dbAddr string, clients int) (*soakProc, error) {
	p := &soakProc{name: name, seed: seed, impatient: impatient, db: redis.NewClient(&redis.Options{Addr: dbAddr}), stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		// The suite's options for a client of a test server: short
		// timeouts, no retries, so faults surface.
		rdb := redis.NewClient((&redistest.Server{Addr: cacheAddr}).RedisOptions())
		c, err := NewClient(Options{Redis: rdb})
		if err != nil {
			_ = rdb.Close()
			p.close()
			return nil, err
		}
		k, err := NewKeyspace(c, Config[user]{
			Name: "soak", TTL: soakTTL, LocalTTL: soakLocalTTL, NegativeTTL: soakNegativeTTL,
			Loader: soakLoad(p.db), Group: soakGroup,
			// The verifier checks a sample of hits after LocalTTL: what it
			// calls inconsistent is what the checker calls stale.
			VerifyRate: 0.02, VerifyDelay: soakLocalTTL,
		})
		p.clients = append(p.clients, &soakClient{idx: i, rdb: rdb, c: c, k: k})
		if err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// libStats adds the Clients' counters to the result.
func (p *soakProc) libStats() {
	for _, sc := range p.clients {
		ks, cs := sc.k.Stats(), sc.c.Stats()
		p.res.Loads += ks.Loads
		p.res.FillsRefused += ks.FillsRefused
		p.res.LoaderDirect += ks.LoaderDirect
		p.res.RedisErrors += ks.RedisErrors
		p.res.BreakerOpens += cs.BreakerOpens
		p.res.Resubs += cs.Resubscriptions
		p.res.Replayed += cs.Replayed
		p.res.Verified += ks.Verified
		p.res.Inconsistent += ks.Inconsistent
	}
}

func (p *soakProc) close() {
	for _, sc := range p.clients {
		_ = sc.c.Close()
		_ = sc.rdb.Close()
	}
	_ = p.db.Close()
}

func (p *soakProc) ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, sc := range p.clients {
		for !sc.c.Ready() {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s client %d: bus not subscribed after %v", p.name, sc.idx, within)
			}
			time.Sleep(2 * time.Millisecond) // poll with deadline
		}
	}
	return nil
}

// run starts the settle pollers and runs the workers until end.
func (p *soakProc) run(start, end time.Time) {
	p.start = start.UnixMicro()
	for _, sc := range p.clients {
		sc := sc
		p.polls.Add(1)
		go func() { defer p.polls.Done(); sc.settle.poll(sc.c, p.stop) }()
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, sc := range p.clients {
		for i := 0; i < soakWorkers; i++ {
			w := &soakWorker{
				p: p, sc: sc, rng: rand.New(rand.NewSource(p.seed + int64(sc.idx*100+i))),
				tag: fmt.Sprintf("%s.c%d.w%d", p.name, sc.idx, i),
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(end)
				mu.Lock()
				defer mu.Unlock()
				p.reads = append(p.reads, w.reads...)
				p.writes = append(p.writes, w.writes...)
				p.res.add(w.res)
			}()
		}
	}
	wg.Wait()
	p.res.Reads = len(p.reads)
	p.res.Writes = len(p.writes)
	p.res.Ops = p.res.Reads + p.res.Cancelled + p.res.Writes + p.res.LockSkips + p.res.Groups
}

type soakWorker struct {
	p      *soakProc
	sc     *soakClient
	rng    *rand.Rand
	tag    string
	reads  []soakRead
	writes []soakWrite
	res    soakResult
}

// run does one operation per soakPace until end. Writes are rare enough
// (about 2% of operations, a group bump 0.06%) that an id often goes more
// than LocalTTL without a write: only then can a stale value be told from
// one about to be overwritten anyway. Ten hot ids take 70% of the writes,
// for the races between writers, loads and faults.
func (w *soakWorker) run(end time.Time) {
	tick := time.NewTicker(soakPace)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		writeID := soakHotIDs + w.rng.Intn(soakIDs-soakHotIDs)
		if w.rng.Intn(10) < 7 {
			writeID = w.rng.Intn(soakHotIDs)
		}
		switch p := w.rng.Intn(10000); {
		case p < 150:
			w.write(writeID, false)
		case p < 210:
			w.write(writeID, true)
		case p < 216:
			w.res.Groups++
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_ = w.sc.k.InvalidateGroup(ctx, soakGroup(strconv.Itoa(writeID))) // may fail under faults: queued for replay
			cancel()
		default:
			w.read(w.rng.Intn(soakIDs))
		}
	}
}

// callerCtx is the context of one cache call. A fraction of the calls
// (-soak.impatient, default one in 20) come from impatient callers, like a
// request its own client gave up on: the deadline, 0-2ms away, may pass
// during the call.
func (w *soakWorker) callerCtx() (context.Context, context.CancelFunc) {
	d := 20 * time.Second
	if w.rng.Float64() < w.p.impatient {
		d = time.Duration(w.rng.Intn(2000)) * time.Microsecond
	}
	return context.WithTimeout(context.Background(), d)
}

func (w *soakWorker) read(id int) {
	ctx, cancel := w.callerCtx()
	defer cancel()
	r := soakRead{id: id, client: w.sc.idx, start: time.Now().UnixMicro()}
	u, err := w.sc.k.Get(ctx, strconv.Itoa(id))
	r.end = time.Now().UnixMicro()
	switch {
	case err == nil:
		r.ver, r.gotID = int64(u.Ver), u.ID
	case errors.Is(err, ErrNotFound):
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		w.res.Cancelled++ // the caller gave up: its own doing, not an error
		return
	default:
		r.ver = -1
		w.res.Errors++
		w.res.note("error", "%s: Get(%d) at +%s: %v", w.tag, id, w.p.rel(r.start), err)
	}
	w.reads = append(w.reads, r)
}

func (w *soakWorker) write(id int, del bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sid := strconv.Itoa(id)
	kind := "set"
	if del {
		kind = "del"
	}
	keys := []string{"lock:" + sid, "ver:" + sid, "db:" + sid}
	token := fmt.Sprintf("%s.%d", w.tag, w.rng.Int63())
	giveUp := time.Now().Add(2 * time.Second)
	var ver int64
	var dbAt int64
	for {
		dbAt = time.Now().UnixMicro()
		v, err := soakWriteScript.Run(ctx, w.p.db, keys, token, kind, w.tag).Int64()
		if err != nil {
			w.res.Errors++
			w.res.note("error", "%s: database write of %d: %v", w.tag, id, err)
			return
		}
		if v >= 0 {
			ver = v
			break
		}
		if time.Now().After(giveUp) {
			w.res.LockSkips++
			return
		}
		_ = wait(ctx, time.Millisecond) // row locked: poll again
	}
	// The database has committed; the cache call may still be given up
	// by an impatient caller, like any failure after the commit.
	cctx, ccancel := w.callerCtx()
	var err error
	if del {
		err = w.sc.k.Delete(cctx, sid)
	} else {
		err = w.sc.k.Set(cctx, sid, user{ID: sid, Name: w.tag, Ver: int(ver)})
	}
	ccancel()
	wr := soakWrite{
		id: id, client: w.sc.idx, ver: ver, del: del, dbAt: dbAt,
		done: time.Now().UnixMicro(), failed: err != nil, writer: w.tag,
	}
	if err != nil {
		w.res.WriteFails++
		wr.err = err.Error()
	}
	w.writes = append(w.writes, wr)
	if err := soakUnlockScript.Run(ctx, w.p.db, keys[:1], token).Err(); err != nil {
		w.res.Errors++
		w.res.note("error", "%s: unlock of %d: %v", w.tag, id, err)
	}
}

func (p *soakProc) rel(us int64) string {
	return (time.Duration(us-p.start) * time.Microsecond).Round(time.Millisecond).String()
}

// quiesce waits until every Client is subscribed, its breaker closed and
// it owes no invalidation, then fixes the completion of failed writes and
// publishes this process's write history to the database. A Client that
// does not settle is counted (Unsettled) with the failed writes it still
// owes; its history is published all the same, those writes never
// completed.
func (p *soakProc) quiesce(ctx context.Context) {
	// The workers are done: from here on this loop takes the looks (one
	// poller at a time keeps each Client's looks in order).
	close(p.stop)
	p.polls.Wait()
	deadline := time.Now().Add(soakSettleWithin)
	for _, sc := range p.clients {
		for {
			// This look starts after the last write: when it finds the
			// Client idle, it bounds every failed write of the Client.
			t0 := time.Now().UnixMicro()
			st := sc.c.Stats()
			if sc.c.Ready() && st.BreakerState == "closed" && soakReplayIdle(sc.c) {
				sc.settle.mu.Lock()
				sc.settle.starts = append(sc.settle.starts, t0)
				sc.settle.end = append(sc.settle.end, time.Now().UnixMicro())
				sc.settle.mu.Unlock()
				break
			}
			if time.Now().After(deadline) {
				p.res.Unsettled++
				p.res.note("settle", "%s client %d still owes invalidations %v after the run (ready=%v, breaker %s, replay pending %d, replay running %v)",
					p.name, sc.idx, soakSettleWithin, sc.c.Ready(), st.BreakerState, st.ReplayPending, soakReplayRunning(sc.c))
				break
			}
			time.Sleep(5 * time.Millisecond) // poll with deadline
		}
	}
	pipe := p.db.Pipeline()
	for i := range p.writes {
		w := &p.writes[i]
		if w.failed {
			w.done = p.clients[w.client].settle.after(w.done)
			if w.done == math.MaxInt64 {
				p.res.note("owed", "%s client %d: %s of id %d (v%d) failed at +%s (%s) and was never replayed",
					p.name, w.client, map[bool]string{true: "delete", false: "set"}[w.del], w.id, w.ver, p.rel(w.dbAt), w.err)
			}
		}
		kind := "set"
		if w.del {
			kind = "del"
		}
		pipe.HSet(ctx, "hist:"+strconv.Itoa(w.id), strconv.FormatInt(w.ver, 10),
			fmt.Sprintf("%s,%d,%d,%v,%s", kind, w.dbAt, w.done, w.failed, w.writer))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		p.res.Errors++
		p.res.note("error", "%s: publishing the write history: %v", p.name, err)
	}
}

// soakHist is the history of one id: its writes by version, and indexes
// that answer the checker's two questions in O(log n).
type soakHist struct {
	byVer      map[int64]soakWrite
	byDone     []soakWrite // sorted by completion
	newestDone []int64     // [i]: the highest version in byDone[:i+1]
	dels       []soakWrite // deletes, sorted by dbAt
	newestDel  []int64     // [i]: the highest version in dels[:i+1]
}

func (h *soakHist) index() {
	for _, w := range h.byVer {
		h.byDone = append(h.byDone, w)
		if w.del {
			h.dels = append(h.dels, w)
		}
	}
	sort.Slice(h.byDone, func(i, j int) bool { return h.byDone[i].done < h.byDone[j].done })
	sort.Slice(h.dels, func(i, j int) bool { return h.dels[i].dbAt < h.dels[j].dbAt })
	h.newestDone = soakRunningMax(h.byDone)
	h.newestDel = soakRunningMax(h.dels)
}

func soakRunningMax(ws []soakWrite) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.ver
		if i > 0 && out[i-1] > w.ver {
			out[i] = out[i-1]
		}
	}
	return out
}

// newestDoneBefore returns the write of the highest version among those
// that completed before t, if any.
func (h *soakHist) newestDoneBefore(t int64) (soakWrite, bool) {
	i := sort.Search(len(h.byDone), func(i int) bool { return h.byDone[i].done >= t })
	if i == 0 {
		return soakWrite{}, false
	}
	return h.byVer[h.newestDone[i-1]], true
}

// newestDeleteBefore returns the highest version of a delete that reached
// the database before t, 0 if none did.
func (h *soakHist) newestDeleteBefore(t int64) int64 {
	i := sort.Search(len(h.dels), func(i int) bool { return h.dels[i].dbAt >= t })
	if i == 0 {
		return 0
	}
	return h.newestDel[i-1]
}

func soakHistory(ctx context.Context, db *redis.Client) (map[int]*soakHist, error) {
	out := make(map[int]*soakHist, soakIDs)
	for id := 0; id < soakIDs; id++ {
		m, err := db.HGetAll(ctx, "hist:"+strconv.Itoa(id)).Result()
		if err != nil {
			return nil, err
		}
		h := &soakHist{byVer: make(map[int64]soakWrite, len(m))}
		for f, v := range m {
			ver, err := strconv.ParseInt(f, 10, 64)
			parts := strings.SplitN(v, ",", 5)
			if err != nil || len(parts) != 5 {
				return nil, fmt.Errorf("hist:%d %s=%q: malformed", id, f, v)
			}
			w := soakWrite{id: id, ver: ver, del: parts[0] == "del", failed: parts[3] == "true", writer: parts[4]}
			w.dbAt, _ = strconv.ParseInt(parts[1], 10, 64)
			w.done, _ = strconv.ParseInt(parts[2], 10, 64)
			h.byVer[ver] = w
		}
		h.index()
		out[id] = h
	}
	return out, nil
}

// check counts stale reads against the shared history, then lost writes
// (final Gets on every Client against the database), and closes the
// Clients.
func (p *soakProc) check(ctx context.Context) soakResult {
	defer p.close()
	hist, err := soakHistory(ctx, p.db)
	if err != nil {
		p.res.Errors++
		p.res.note("error", "%s: history: %v", p.name, err)
		return p.res
	}
	bound := soakLocalTTL.Microseconds()
	for _, r := range p.reads {
		if r.ver < 0 {
			continue
		}
		h := hist[r.id]
		// The newest write that completed more than LocalTTL before the
		// read started: the read may return it or anything newer (a
		// "not found" is newer when a newer delete reached the database
		// before the read ended).
		last, found := h.newestDoneBefore(r.start - bound)
		what := ""
		switch wrote, ok := h.byVer[r.ver]; {
		case r.ver > 0 && r.gotID != strconv.Itoa(r.id):
			what = fmt.Sprintf("the value of id %q", r.gotID)
		case r.ver > 0 && (!ok || wrote.del):
			what = fmt.Sprintf("v%d, which no Set wrote", r.ver)
		case !found:
		case r.ver > 0 && r.ver < last.ver:
			what = fmt.Sprintf("v%d", r.ver)
		case r.ver == 0 && !last.del && h.newestDeleteBefore(r.end) < last.ver:
			what = "not found"
		}
		if what == "" {
			continue
		}
		p.res.Stale++
		lw := "no write"
		if found {
			lw = fmt.Sprintf("v%d (%s by %s, failed=%v, db at +%s, completed at +%s)",
				last.ver, map[bool]string{true: "del", false: "set"}[last.del], last.writer, last.failed, p.rel(last.dbAt), p.rel(last.done))
		}
		p.res.note("stale", "%s client %d: stale read of id %d: got %s in Get +%s..+%s; newest write completed LocalTTL before: %s",
			p.name, r.client, r.id, what, p.rel(r.start), p.rel(r.end), lw)
	}
	p.libStats() // before converge's own Gets
	p.converge(ctx)
	return p.res
}

// converge polls Get of every id on every Client until each returns the
// database's last state, for LocalTTL plus some slack; what does not
// converge is a lost write.
func (p *soakProc) converge(ctx context.Context) {
	want := make([]int64, soakIDs)
	for id := range want {
		row, err := p.db.Get(ctx, "db:"+strconv.Itoa(id)).Result()
		switch {
		case err == redis.Nil:
		case err != nil:
			p.res.Errors++
			p.res.note("error", "%s: database read of %d: %v", p.name, id, err)
			return
		default:
			v, _, _ := strings.Cut(row, ":")
			want[id], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	type pair struct{ client, id int }
	got := map[pair]string{}
	for _, sc := range p.clients {
		for id := 0; id < soakIDs; id++ {
			got[pair{sc.idx, id}] = "not read yet"
		}
	}
	deadline := time.Now().Add(soakLocalTTL + soakConvergeSlack)
	for len(got) > 0 && time.Now().Before(deadline) {
		for pr := range got {
			u, err := p.clients[pr.client].k.Get(ctx, strconv.Itoa(pr.id))
			var ver int64
			switch {
			case err == nil:
				ver = int64(u.Ver)
			case errors.Is(err, ErrNotFound):
			default:
				got[pr] = err.Error()
				continue
			}
			if ver == want[pr.id] {
				delete(got, pr)
			} else {
				got[pr] = fmt.Sprintf("v%d", ver)
			}
		}
		time.Sleep(20 * time.Millisecond) // poll with deadline
	}
	for pr, g := range got {
		p.res.Lost++
		p.res.note("lost", "%s client %d: id %d reads %s after the run, the database has v%d (0: deleted)", p.name, pr.client, pr.id, g, want[pr.id])
	}
}

// soakLeaks returns how many goroutines goleak finds, and its report.
func soakLeaks(opts ...goleak.Option) (int, string) {
	err := goleak.Find(opts...)
	if err == nil {
		return 0, ""
	}
	return max(1, strings.Count(err.Error(), "[Goroutine ")), err.Error()
}

// soakChildConfig is what the parent hands a child process.
type soakChildConfig struct {
	Name  string `json:"name"`
	Cache string `json:"cache"`
	DB    string `json:"db"`
	Seed  int64  `json:"seed"`
	// Impatient is -soak.impatient, which the child's flags do not carry.
	Impatient float64 `json:"impatient"`
}

// TestSoakChild is not a test: it is a child process of TestSoak, run with
// the configuration in $TIERCACHE_SOAK_CHILD. It talks on stdin/stdout:
// "ready" -> "go <start µs> <end µs>" -> runs -> "quiesced" -> "check" ->
// one "result <json>" line.
func TestSoakChild(t *testing.T) {
	spec := os.Getenv(soakChildEnv)
	if spec == "" {
		return // run as a normal test: nothing to do
	}
	leakOpt := goleak.IgnoreCurrent()
	say := func(format string, args ...any) { fmt.Printf(soakLine+format+"\n", args...) }
	var cfg soakChildConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		say("error config: %v", err)
		return
	}
	p, err := newSoakProc(cfg.Name, cfg.Seed, cfg.Impatient, cfg.Cache, cfg.DB, 1)
	if err != nil {
		say("error %v", err)
		return
	}
	if err := p.ready(10 * time.Second); err != nil {
		p.close()
		say("error %v", err)
		return
	}
	say("ready")
	in := bufio.NewScanner(os.Stdin)
	var start, end int64
	if !in.Scan() {
		p.close()
		return // the parent is gone
	}
	if _, err := fmt.Sscanf(in.Text(), "go %d %d", &start, &end); err != nil {
		p.close()
		say("error %q: %v", in.Text(), err)
		return
	}
	p.run(time.UnixMicro(start), time.UnixMicro(end))
	ctx := context.Background()
	p.quiesce(ctx)
	say("quiesced")
	if !in.Scan() || in.Text() != "check" {
		p.close()
		return
	}
	res := p.check(ctx)
	if n, report := soakLeaks(leakOpt); n > 0 {
		res.Leaked += n
		res.note("leak", "%s: %s", p.name, report)
	}
	b, _ := json.Marshal(res)
	say("result %s", b)
}

// soakChild is a running child process.
type soakChild struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its protocol lines; closed at EOF
	once  sync.Once
	err   error
}

func startSoakChild(t *testing.T, cfg soakChildConfig) *soakChild {
	t.Helper()
	spec, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSoakChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), soakChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &soakChild{name: cfg.Name, cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(ch.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), soakLine); ok {
				ch.lines <- line
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill() // harmless once it has exited
		_ = ch.wait()
	})
	return ch
}

// wait drains the child's output and reaps it.
func (c *soakChild) wait() error {
	c.once.Do(func() {
		for range c.lines {
		}
		c.err = c.cmd.Wait()
	})
	return c.err
}

func (c *soakChild) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
}

func (c *soakChild) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			t.Fatalf("%s exited while the parent waited for %q: %v", c.name, prefix, c.wait())
		}
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			t.Fatalf("%s said %q, want %q", c.name, line, prefix)
		}
		return strings.TrimSpace(rest)
	case <-timer.C:
		t.Fatalf("%s said nothing within %v, want %q", c.name, within, prefix)
	}
	return ""
}

// soakFaults counts the faults injected and keeps their timeline.
type soakFaults struct {
	kills, restarts, subkills, pauses, slowloads, rewinds, evictions int
	log                                                              []string
}

func (f *soakFaults) total() int {
	return f.kills + f.restarts + f.subkills + f.pauses + f.slowloads + f.rewinds + f.evictions
}

// inject runs faults on a schedule until end, in the test goroutine (the
// redistest helpers may call t.Fatal). The first four faults are one of
// each kind, the rest random; none starts less than 1.5s before end, so
// every restart is done and the last fault has time to be recovered from
// before the checks.
func (f *soakFaults) inject(t *testing.T, cache *redistest.Server, db *redis.Client, rng *rand.Rand, start, end time.Time) {
	kinds := []string{"kill", "subkill", "pause", "slowload", "rewind", "evict"}
	rel := func() string { return time.Since(start).Round(time.Millisecond).String() }
	next := start.Add(time.Second)
	for i := 0; !next.Add(1500 * time.Millisecond).After(end); i++ {
		_ = wait(context.Background(), time.Until(next))
		kind := kinds[i%len(kinds)]
		if i >= len(kinds) {
			kind = kinds[rng.Intn(len(kinds))]
		}
		switch kind {
		case "kill":
			down := time.Duration(300+rng.Intn(400)) * time.Millisecond
			f.log = append(f.log, fmt.Sprintf("+%s kill (down %v)", rel(), down))
			cache.Kill(t)
			f.kills++
			_ = wait(context.Background(), down)
			cache.Restart(t)
			f.restarts++
			f.log = append(f.log, fmt.Sprintf("+%s restarted", rel()))
		case "subkill":
			n := cache.KillClients(t, "TYPE", "pubsub")
			f.subkills++
			f.log = append(f.log, fmt.Sprintf("+%s killed %d subscriber connections", rel(), n))
		case "pause":
			cache.Pause(t, 300*time.Millisecond)
			f.pauses++
			f.log = append(f.log, fmt.Sprintf("+%s CLIENT PAUSE 300ms", rel()))
		case "rewind":
			// A restart from an older snapshot: the writes of the last
			// moments are lost, their replaced values come back.
			cache.Save(t)
			_ = wait(context.Background(), time.Duration(300+rng.Intn(400))*time.Millisecond)
			cache.RestartFromSnapshot(t)
			f.rewinds++
			f.log = append(f.log, fmt.Sprintf("+%s restarted from the snapshot of a moment before", rel()))
		case "evict":
			// Memory pressure with an allkeys policy: values and metadata
			// (versions, epochs) go alike, the evictor choosing at random.
			n := f.evict(t, cache, rng)
			f.evictions++
			f.log = append(f.log, fmt.Sprintf("+%s memory pressure: %d keys evicted, metadata among them", rel(), n))
		case "slowload":
			d := time.Duration(1000+rng.Intn(1000)) * time.Millisecond
			if err := db.Set(context.Background(), soakSlowKey, "1", d).Err(); err != nil {
				t.Fatalf("slow-loader flag: %v", err)
			}
			f.slowloads++
			f.log = append(f.log, fmt.Sprintf("+%s loaders slow for %v", rel(), d))
		}
		next = next.Add(time.Duration(1200+rng.Intn(600)) * time.Millisecond)
	}
	_ = wait(context.Background(), time.Until(end))
}

// evict puts the cache server under memory pressure for a moment, with
// maxmemory-policy allkeys-random, and evicts the metadata keys (group
// versions, epochs) that the pressure would in time, so that every run loses
// some; it returns how many keys went.
func (f *soakFaults) evict(t *testing.T, cache *redistest.Server, rng *rand.Rand) int {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: cache.Addr})
	defer c.Close()
	before, _ := c.DBSize(ctx).Result()
	var used int64
	if info, err := c.Info(ctx, "memory").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				used, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	cache.ConfigSet(t, "maxmemory-policy", "allkeys-random")
	cache.ConfigSet(t, "maxmemory", strconv.FormatInt(used-used/20, 10))
	meta, _ := c.Keys(ctx, "{*}").Result()
	rng.Shuffle(len(meta), func(i, j int) { meta[i], meta[j] = meta[j], meta[i] })
	if len(meta) > 0 {
		_ = c.Del(ctx, meta[:1+rng.Intn(len(meta))]...).Err()
	}
	_ = wait(ctx, 300*time.Millisecond)
	cache.ConfigSet(t, "maxmemory", "0")
	cache.ConfigSet(t, "maxmemory-policy", "noeviction")
	after, _ := c.DBSize(ctx).Result()
	return int(max(before-after, 0))
}

// TestSoak is the chaos soak described at the top of this file. It runs
// for -soak.duration (default 15s) and prints one summary line.
func TestSoak(t *testing.T) {
	leakOpts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// The redistest servers' reapers: the servers outlive this check
		// (t.Cleanup stops them), and Restart starts a new reaper.
		goleak.IgnoreAnyFunction("github.com/tiercache/tiercache/internal/redistest.(*Server).run.func1"),
	}
	dur := *soakDuration
	seed := time.Now().UnixNano()
	t.Logf("soak: seed %d, %v, %d Clients in this process, %d child processes", seed, dur, soakParentClients, soakChildren)
	cache := aofServer(t)
	dbsrv := redistest.Start(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: dbsrv.Addr})
	defer admin.Close()

	// Every row starts at v1: history and database alike.
	now := time.Now().UnixMicro()
	pipe := admin.Pipeline()
	for id := 0; id < soakIDs; id++ {
		sid := strconv.Itoa(id)
		pipe.Set(ctx, "db:"+sid, "1:init", 0)
		pipe.Set(ctx, "ver:"+sid, 1, 0)
		pipe.HSet(ctx, "hist:"+sid, "1", fmt.Sprintf("set,%d,%d,false,init", now, now))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("populating the database: %v", err)
	}

	children := make([]*soakChild, soakChildren)
	for i := range children {
		children[i] = startSoakChild(t, soakChildConfig{
			Name: fmt.Sprintf("child%d", i+1), Cache: cache.Addr, DB: dbsrv.Addr, Seed: seed + int64(i+1)*1_000_000, Impatient: *soakImpatient,
		})
	}
	p, err := newSoakProc("parent", seed, *soakImpatient, cache.Addr, dbsrv.Addr, soakParentClients)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.close()
		}
	})
	if err := p.ready(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, ch := range children {
		ch.expect(t, "ready", 30*time.Second)
	}

	start := time.Now()
	end := start.Add(dur)
	for _, ch := range children {
		ch.send(t, fmt.Sprintf("go %d %d", start.UnixMicro(), end.UnixMicro()))
	}
	ran := make(chan struct{})
	go func() { defer close(ran); p.run(start, end) }()
	var faults soakFaults
	if *soakFaultsOn {
		faults.inject(t, cache, admin, rand.New(rand.NewSource(seed)), start, end)
	} else {
		_ = wait(context.Background(), time.Until(end))
	}
	<-ran
	took := time.Since(start)

	p.quiesce(ctx)
	for _, ch := range children {
		ch.expect(t, "quiesced", soakSettleWithin+15*time.Second)
	}
	for _, ch := range children {
		ch.send(t, "check")
	}
	total := p.check(ctx)
	closed = true
	for _, ch := range children {
		line := ch.expect(t, "result", 30*time.Second)
		var r soakResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s's result %q: %v", ch.name, line, err)
		}
		total.add(r)
		if err := ch.wait(); err != nil {
			t.Errorf("%s exited with %v", ch.name, err)
		}
	}
	_ = admin.Close()
	if n, report := soakLeaks(leakOpts...); n > 0 {
		total.Leaked += n
		total.note("leak", "parent: %s", report)
	}

	// One summary line; the bracket shows that the faults bit.
	t.Logf("soak: ops=%d reads=%d writes=%d faults=%d (kills=%d restarts=%d subkills=%d pauses=%d slowloads=%d rewinds=%d evictions=%d) stale=%d errors=%d lost=%d leaked=%d verified=%d inconsistent=%d duration=%v ops/s=%.0f "+
		"[writes failed %d, unsettled clients %d, gets given up %d, group bumps %d, loads %d, fills refused %d, loader direct %d, breaker opens %d, resubscriptions %d, replayed %d]",
		total.Ops, total.Reads, total.Writes, faults.total(), faults.kills, faults.restarts, faults.subkills, faults.pauses, faults.slowloads, faults.rewinds, faults.evictions,
		total.Stale, total.Errors, total.Lost, total.Leaked, total.Verified, total.Inconsistent, took.Round(time.Millisecond), float64(total.Ops)/took.Seconds(),
		total.WriteFails, total.Unsettled, total.Cancelled, total.Groups, total.Loads, total.FillsRefused, total.LoaderDirect, total.BreakerOpens, total.Resubs, total.Replayed)
	if total.Stale+total.Errors+total.Lost+total.Leaked+total.Unsettled > 0 {
		t.Logf("faults:\n  %s", strings.Join(faults.log, "\n  "))
		for _, n := range total.Notes {
			t.Log(n)
		}
	}
	if total.Unsettled != 0 {
		t.Errorf("%d Clients still owed invalidations %v after the run: failed writes were not replayed", total.Unsettled, soakSettleWithin)
	}
	if total.Stale != 0 {
		t.Errorf("%d stale reads (older than a write completed LocalTTL=%v before)", total.Stale, soakLocalTTL)
	}
	if total.Errors != 0 {
		t.Errorf("%d errors (Gets with a Loader must not fail)", total.Errors)
	}
	if (total.Inconsistent == 0) != (total.Stale == 0) {
		t.Errorf("the verifier found %d inconsistencies where the checker found %d stale reads: they must agree", total.Inconsistent, total.Stale)
	}
	if total.Verified == 0 {
		t.Errorf("the verifier checked nothing")
	}
	if total.Lost != 0 {
		t.Errorf("%d (Client, id) pairs never converged to the database: lost writes", total.Lost)
	}
	if total.Leaked != 0 {
		t.Errorf("%d goroutines leaked after Close", total.Leaked)
	}
	if faults.kills == 0 || faults.restarts == 0 || faults.subkills == 0 || faults.pauses == 0 || faults.slowloads == 0 || faults.rewinds == 0 || faults.evictions == 0 {
		t.Errorf("not every fault ran (%+v): -soak.duration %v is too short", faults, dur)
	}
	if total.Reads == 0 || total.Writes == 0 {
		t.Errorf("the workload did nothing: %+v", total)
	}
}
