package tiered

// Errors retrying cannot cure: a Redis user that may not publish or
// subscribe on the invalidation channel, or read INFO.

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/redistest"
)

// aclClient is a Client of srv logged in as a user with the given ACL rules
// (besides a password and every key), logging into logs.
func aclClient(t *testing.T, srv *redistest.Server, user string, rules ...string) (*Client, *observer.ObservedLogs) {
	t.Helper()
	args := append([]any{"ACL", "SETUSER", user, "on", ">pw", "~*"}, toAny(rules)...)
	if err := srv.Client(t).Do(ctxT(t), args...).Err(); err != nil {
		t.Fatal(err)
	}
	o := srv.RedisOptions()
	o.Username, o.Password = user, "pw"
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	core, logs := observer.New(zap.InfoLevel)
	c, err := NewClient(Options{Redis: rdb, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, logs
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func TestRefusedChannelIsReportedNotRetried(t *testing.T) {
	srv := redistest.Start(t)
	c, logs := aclClient(t, srv, "nochannel", "&someone-else", "+@all")
	eventually(t, 5*time.Second, "the refused subscription reported", func() bool { return c.Err() != nil })
	var pe *PermanentError
	if err := c.Err(); !errors.As(err, &pe) || pe.Op != "subscribe" || !strings.Contains(pe.Hint, "&"+defaultChannel) {
		t.Fatalf("Err = %v; want a refused subscription naming the grant &%s", err, defaultChannel)
	}
	if c.Ready() {
		t.Fatal("a Client that cannot subscribe reports ready")
	}
	k := newKS(t, c, Config[user]{})
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		if err := k.Set(ctx, "a", user{Name: "v"}); err == nil {
			t.Fatal("Set succeeded without the right to publish")
		}
	}
	st := c.Stats()
	if st.InvalidationsDropped != 3 || st.ReplayPending != 0 || st.ReplayQueued != 0 {
		t.Fatalf("stats %+v: want 3 dropped, nothing queued for replay", st)
	}
	if err := c.Err(); !errors.As(err, &pe) || pe.Op != "publish" || !strings.Contains(pe.Hint, "&"+defaultChannel) {
		t.Fatalf("Err = %v; want a refused publish naming the grant", err)
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("cannot publish").Len(); n != 1 {
		t.Fatalf("%d Error lines for the refused publish, want exactly 1", n)
	}
	// The ACL is fixed: the next subscription clears the report.
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "nochannel", "&*").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "subscribed once allowed", c.Ready)
	if err := k.Set(ctx, "a", user{Name: "v"}); err != nil {
		t.Fatalf("Set once allowed: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err after the ACL was fixed: %v", err)
	}
}

func TestRefusedInfoIsSaidOnce(t *testing.T) {
	srv := redistest.Start(t)
	c, logs := aclClient(t, srv, "noinfo", "&*", "+@all", "-info")
	waitReady(t, c)
	k := newKS(t, c, Config[user]{})
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		if err := k.Set(ctx, "a", user{Name: "v"}); err != nil {
			t.Fatalf("Set without INFO: %v", err)
		}
		if u := mustGet(t, k, "a"); u.Name != "v" {
			t.Fatalf("Get = %+v", u)
		}
	}
	if n := logs.FilterMessageSnippet("cannot read INFO").Len(); n != 1 {
		t.Fatalf("%d warnings about INFO, want 1: %v", n, logs.All())
	}
}
