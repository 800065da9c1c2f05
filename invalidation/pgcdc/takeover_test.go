package pgcdc

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// The child process's environment: helperEnv marks it, the others point it
// at its parent's servers.
const (
	helperEnv      = "TIERCACHE_PGCDC_HELPER"
	helperPostgres = "TIERCACHE_PGCDC_HELPER_POSTGRES"
	helperRedis    = "TIERCACHE_PGCDC_HELPER_REDIS"
	helperTimeout  = "TIERCACHE_PGCDC_HELPER_SERVER_TIMEOUT" // Config.ServerTimeout, when set
)

// TestHelperWatcher is not a test: it is the child process of the takeover
// tests, a replica of a service running a Watcher. It prints "active" once
// it holds the slot and runs until its stdin closes (or it is killed).
func TestHelperWatcher(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return // run as a normal test: nothing to do
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(helperRedis)})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer c.Close()
	items, err := tiered.NewKeyspace(c, tiered.Config[string]{Name: "item", TTL: time.Hour, LocalTTL: time.Hour})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	serverTimeout, _ := time.ParseDuration(os.Getenv(helperTimeout))
	w, err := Start(ctxT(t), Config{ConnString: os.Getenv(helperPostgres), Rules: []Rule{{Table: "items", Target: items}},
		StandbyRetry: 200 * time.Millisecond, StatusInterval: 200 * time.Millisecond, ServerTimeout: serverTimeout})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer w.Close()
	eventually(t, time.Minute, "the child holds the slot", func() bool { return w.Stats().Active })
	fmt.Println("active")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// child is a Watcher in another process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	exited chan error
	killed sync.Once
}

func startChild(t *testing.T, dsn, redisAddr string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWatcher$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperPostgres+"="+dsn, helperRedis+"="+redisAddr)
	cmd.Env = append(cmd.Env, env...)
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
	ch := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
		ch.exited <- cmd.Wait()
	}()
	t.Cleanup(func() { ch.kill(t) })
	return ch
}

// waitFor waits for the child to print line.
func (c *child) waitFor(t *testing.T, line string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case got, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child exited before printing %q", line)
			}
			if got == line {
				return
			}
			t.Logf("child: %s", got)
		case <-timeout:
			t.Fatalf("the child did not print %q within 30s", line)
		}
	}
}

// kill sends SIGKILL, a crash: no Close, no goodbye to PostgreSQL.
// Killing a child that already exited does nothing; the second kill of one
// returns at once.
func (c *child) kill(t *testing.T) {
	c.killed.Do(func() {
		_ = c.cmd.Process.Kill()
		for range c.lines {
		}
		<-c.exited
	})
}

// takeoverRun is the takeover test: a child process holds the slot, an
// in-process Watcher waits as a standby, two Clients that cached every row
// read on while several goroutines make 5,000 single-row updates, one per
// row, so that any invalidation lost leaves a row stale; the child is killed
// in the middle (and, with redisFault, Redis killed and restarted after it).
// At the end every id on every Client must equal the table.
func takeoverRun(t *testing.T, redisFault bool) {
	const ids, writers, updates = 5000, 4, 5000
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items SELECT g::text, 'v0' FROM generate_series(0, $1 - 1) g`, ids)
	rs := redistest.Start(t)
	readers := []*peer{newPeer(t, rs, db), newPeer(t, rs, db)}

	all := make([]string, ids)
	for i := range all {
		all[i] = strconv.Itoa(i)
	}
	for _, p := range readers {
		if m, err := p.items.GetMany(ctxT(t), all); err != nil || len(m) != ids {
			t.Fatalf("cache every row: %d, %v", len(m), err)
		}
	}
	order := rand.Perm(ids)

	first := startChild(t, dsn, rs.Addr)
	first.waitFor(t, "active")
	standby := standbyWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: newPeer(t, rs, db).items}}})

	var done atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, p := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = p.items.Get(ctxT(t), strconv.Itoa(rand.IntN(ids))) // errors are fine while Redis is down
			}
		}()
	}
	var writersWG sync.WaitGroup
	for g := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			for i := g; i < updates; i += writers {
				id := strconv.Itoa(order[i])
				if _, err := db.Exec(ctxT(t), `UPDATE items SET val = $2 WHERE id = $1`, id, fmt.Sprintf("w%d-%d", g, i)); err != nil {
					t.Errorf("update: %v", err)
					return
				}
				done.Add(1)
			}
		}()
	}
	at := func(n int64) {
		eventually(t, time.Minute, fmt.Sprintf("%d updates made", n), func() bool { return done.Load() >= n })
	}
	at(updates * 3 / 10)
	first.kill(t)
	killed := time.Now()
	eventually(t, 30*time.Second, "the standby took over", func() bool {
		st := standby.Stats()
		return st.Active && st.Takeovers == 1
	})
	// The bound after a process dies: StandbyRetry (200ms here), plus the
	// connection and start of replication.
	if took := time.Since(killed); took > 200*time.Millisecond+2*time.Second {
		t.Errorf("the standby took over %v after the kill", took)
	} else {
		t.Logf("the standby took over within %v of the kill", took)
	}
	if redisFault {
		at(updates * 5 / 10)
		rs.Kill(t)
		at(updates * 7 / 10)
		rs.Restart(t)
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	want := map[string]string{}
	rows, err := db.Query(ctxT(t), `SELECT id, val FROM items`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, val string
		if err := rows.Scan(&id, &val); err != nil {
			t.Fatal(err)
		}
		want[id] = val
	}
	if rows.Err() != nil || len(want) != ids {
		t.Fatalf("read the table: %d rows, %v", len(want), rows.Err())
	}
	for i, p := range readers {
		eventually(t, 30*time.Second, fmt.Sprintf("client %d equals the table", i), func() bool {
			for id, val := range want {
				if got := p.get(t, id); got != val {
					return false
				}
			}
			return true
		})
	}
	st := standby.Stats()
	t.Logf("standby after the takeover: %+v", st)
	if st.Changes == 0 {
		t.Fatalf("the standby applied nothing: %+v", st)
	}
}

func TestTakeoverAfterKillLosesNothing(t *testing.T) { takeoverRun(t, false) }

func TestTakeoverAndRedisRestartLoseNothing(t *testing.T) { takeoverRun(t, true) }

// A consumer that stops answering without closing its connection (its host
// froze or the network dropped: SIGSTOP here) is ended by the server after
// ServerTimeout (wal_sender_timeout, set per connection), and a standby takes
// over: the bound is ServerTimeout + StandbyRetry.
func TestTakeoverFromFrozenConsumer(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('1', 'old')`)
	rs := redistest.Start(t)
	reader := newPeer(t, rs, db)
	const serverTimeout = 2 * time.Second
	frozen := startChild(t, dsn, rs.Addr, helperTimeout+"="+serverTimeout.String())
	frozen.waitFor(t, "active")
	standby := standbyWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: newPeer(t, rs, db).items}}})
	if reader.get(t, "1") != "old" {
		t.Fatal("not cached")
	}
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	sqlExec(t, db, `UPDATE items SET val = 'new' WHERE id = '1'`)
	eventually(t, 4*serverTimeout, "the standby takes over from the frozen consumer", func() bool { return standby.Stats().Active })
	took := time.Since(stopped)
	t.Logf("took over %v after the consumer froze (ServerTimeout %v, StandbyRetry 200ms)", took, serverTimeout)
	if took < serverTimeout/2 || took > serverTimeout+200*time.Millisecond+2*time.Second {
		t.Fatalf("took over after %v; want about ServerTimeout %v + StandbyRetry", took, serverTimeout)
	}
	eventually(t, propagation, "the change made while the consumer froze reaches the reader", func() bool { return reader.get(t, "1") == "new" })
}

// standbyWatcher starts a Watcher that must find the slot held: it returns
// once the Watcher is a standby.
func standbyWatcher(t *testing.T, cfg Config) *Watcher {
	t.Helper()
	w := startWatcher(t, cfg)
	eventually(t, propagation, "the watcher is a standby", func() bool { return w.Stats().Standby })
	return w
}
