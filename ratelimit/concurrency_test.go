package ratelimit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exactness under concurrency: goroutines of this process, on two go-redis
// clients of their own, and of a child process (this test binary run
// again, see TestMain) hammer one key together. Exactly the limit is
// allowed, and each allowed request sees a different Remaining: no two
// decisions overlapped.

const childEnv = "RATELIMIT_TEST_CHILD"

// hammerJob is what one limiter instance does: Workers goroutines make
// Tries calls each.
type hammerJob struct {
	Addrs   []string
	Cluster bool
	Key     string
	Limit   Limit
	Workers int
	Tries   int
}

// hammerReport is what they saw.
type hammerReport struct {
	Allowed   int
	Degraded  int
	Errors    []string
	Remaining []int // of every allowed request
}

func (r *hammerReport) add(o hammerReport) {
	r.Allowed += o.Allowed
	r.Degraded += o.Degraded
	r.Errors = append(r.Errors, o.Errors...)
	r.Remaining = append(r.Remaining, o.Remaining...)
}

// hammer starts job's workers on lim. Each first makes one peek (n = 0:
// a connection of its own, the script loaded), then waits for start, so
// that the workers of every process begin together. ready is closed once
// all have warmed up; the report arrives on done.
func hammer(lim *Limiter, job hammerJob, start <-chan struct{}) (ready <-chan struct{}, done <-chan hammerReport) {
	readyCh, doneCh := make(chan struct{}), make(chan hammerReport, 1)
	var mu sync.Mutex
	var rep hammerReport
	var warm, wg sync.WaitGroup
	for w := 0; w < job.Workers; w++ {
		warm.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine hammerReport
			if _, err := lim.AllowN(context.Background(), job.Key, job.Limit, 0); err != nil {
				mine.Errors = append(mine.Errors, "warm-up: "+err.Error())
			}
			warm.Done()
			<-start
			for i := 0; i < job.Tries; i++ {
				res, err := lim.Allow(context.Background(), job.Key, job.Limit)
				switch {
				case err != nil:
					mine.Errors = append(mine.Errors, err.Error())
				case res.Degraded:
					mine.Degraded++
				case res.Allowed:
					mine.Allowed++
					mine.Remaining = append(mine.Remaining, res.Remaining)
				}
			}
			mu.Lock()
			rep.add(mine)
			mu.Unlock()
		}()
	}
	go func() {
		warm.Wait()
		close(readyCh)
		wg.Wait()
		doneCh <- rep
	}()
	return readyCh, doneCh
}

// childMain is the child process: it reads its job from the environment,
// says "ready" once its limiter has reached Redis, hammers on the first
// line of stdin and prints its report.
func childMain() int {
	var job hammerJob
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &job); err != nil {
		fmt.Println("bad job:", err)
		return 2
	}
	var rdb redis.UniversalClient
	if job.Cluster {
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: job.Addrs})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: job.Addrs[0]})
	}
	defer rdb.Close()
	start := make(chan struct{})
	ready, done := hammer(newLimiter(rdb), job, start)
	<-ready
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 2
	}
	close(start)
	out, _ := json.Marshal(<-done)
	fmt.Println(string(out))
	return 0
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startChild(t *testing.T, job hammerJob) *child {
	t.Helper()
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled binary otherwise sleeps 1s before it exits.
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec), "GORACE=atexit_sleep_ms=0")
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
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	if line := c.line(t); line != "ready" {
		t.Fatalf("child did not start: %q", line)
	}
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("child died: %v", c.out.Err())
	}
	return c.out.Text()
}

func TestSeveralProcesses(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		rdb := b.client(t)
		for _, tc := range []struct {
			name  string
			limit Limit
			want  int
		}{
			// An interval of 6 minutes: no refill while the test runs.
			{"GCRA", Limit{Rate: 10, Period: time.Hour, Burst: 25}, 25},
			{"FixedWindow", Limit{Rate: 40, Period: longPeriod(t, rdb), Algorithm: FixedWindow}, 40},
			{"SlidingWindow", Limit{Rate: 40, Period: time.Hour, Algorithm: SlidingWindow}, 40},
		} {
			t.Run(tc.name, func(t *testing.T) {
				job := hammerJob{Addrs: b.addrs(t), Cluster: b.isCluster, Key: testKey(t), Limit: tc.limit, Workers: 4, Tries: 25}
				kid := startChild(t, job)
				start := make(chan struct{})
				var reports []<-chan hammerReport
				for i := 0; i < 2; i++ {
					ready, done := hammer(newLimiter(b.client(t)), job, start)
					<-ready
					reports = append(reports, done)
				}
				if _, err := io.WriteString(kid.stdin, "go\n"); err != nil {
					t.Fatal(err)
				}
				close(start)
				var total hammerReport
				if err := json.Unmarshal([]byte(kid.line(t)), &total); err != nil {
					t.Fatalf("child's report: %v", err)
				}
				childAllowed := total.Allowed
				for _, done := range reports {
					total.add(<-done)
				}
				if len(total.Errors) > 0 || total.Degraded > 0 {
					t.Fatalf("%d errors (%v), %d degraded decisions", len(total.Errors), total.Errors, total.Degraded)
				}
				if total.Allowed != tc.want {
					t.Fatalf("%d of %d requests allowed in all, want exactly %d", total.Allowed, 3*job.Workers*job.Tries, tc.want)
				}
				slices.Sort(total.Remaining)
				for i, r := range total.Remaining {
					if r != i {
						t.Fatalf("Remaining of the allowed requests = %v, want 0..%d once each", total.Remaining, tc.want-1)
					}
				}
				t.Logf("%d allowed: %d by the child process, the rest by two clients here", total.Allowed, childAllowed)
			})
		}
	})
}
