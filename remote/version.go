package remote

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Versions of groups and epochs of keyspaces: counters that only grow, each
// part of the keys of the values they cover, so that one bump makes every
// covered value unreachable without enumerating them (see versionScript).

// Version is one version or epoch key and what a script that may create or
// advance it needs.
type Version struct {
	Key string
	// IncarnationKey, with Incarnation, makes a version read check the
	// incarnation of the server's data it was written under (epochs only;
	// same hash slot as Key).
	IncarnationKey, Incarnation string
	// Floor is the largest version the caller has seen: a new one is
	// larger.
	Floor uint64
	// Prefix is the bump message a new version is published with, without
	// its trailing version.
	Prefix []byte
}

// keys are the scripts' KEYS: the version key, and its incarnation key
// when the incarnation is checked.
func (v Version) keys() []string {
	if v.Incarnation == "" {
		return []string{v.Key}
	}
	return []string{v.Key, v.IncarnationKey}
}

// VersionRead is what Version found.
type VersionRead struct {
	Version uint64
	Created bool // a new version, published
}

// Version returns the version at v.Key, creating and publishing a new one
// when it is absent, unreadable, or (with an incarnation) written under
// another incarnation of the server's data.
func (s *Store) Version(ctx context.Context, v Version) (VersionRead, error) {
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) (VersionRead, error) {
		r, err := s.runFlagged(ctx, versionScript, v.keys(), v.Incarnation, v.Floor, s.opts.Channel, v.Prefix).Int64Slice()
		if err != nil {
			return VersionRead{}, err
		}
		if len(r) != 2 {
			return VersionRead{}, fmt.Errorf("tiercache: unexpected version reply %v", r)
		}
		return VersionRead{Version: uint64(r[0]), Created: r[1] == 1}, nil
	})
}

// Bump advances the version at v.Key beyond every version handed out before
// and publishes it, atomically. It returns the new version.
func (s *Store) Bump(ctx context.Context, v Version) (uint64, error) {
	return guarded(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) (uint64, error) {
		n, err := s.runFlagged(ctx, bumpScript, v.keys(), v.Floor, s.opts.Channel, v.Prefix, v.Incarnation).Int64()
		return uint64(n), err
	})
}

// runFlagged runs a flagged script, or its legacy form once the server has
// refused script flags.
func (s *Store) runFlagged(ctx context.Context, sc flaggedScript, keys []string, args ...interface{}) *redis.Cmd {
	if !s.noFlags.Load() {
		cmd := sc.flagged.Run(ctx, s.rdb, keys, args...)
		if !isFlagsRefused(cmd.Err()) {
			return cmd
		}
		s.noFlags.Store(true)
	}
	return sc.legacy.Run(ctx, s.rdb, keys, args...)
}

// ServerState is what a Client learns of the server in one round trip: the
// incarnation of its data and its clock.
type ServerState struct {
	// Incarnation names the server process(es) holding the data and their
	// replication history: "run_id/master_replid" of each master, sorted.
	// It changes on every restart (whatever the data came back from) and
	// every failover, the events after which the data may be older than
	// what was acknowledged.
	Incarnation string
	// Time is the server's clock; Sent and Received are the caller's
	// clock (Options.Wall) around the request.
	Time, Sent, Received time.Time
}

// ServerState asks every master for its run id and replication id, and one
// of them for its clock.
func (s *Store) ServerState(ctx context.Context) (ServerState, error) {
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) (ServerState, error) {
		var st ServerState
		st.Sent = s.wall()
		var ids []string
		var err error
		if cc, ok := s.rdb.(*redis.ClusterClient); ok {
			ids, err = clusterIncarnations(ctx, cc)
			if err == nil {
				st.Time, err = cc.Time(ctx).Result()
			}
		} else {
			var id string
			id, st.Time, err = nodeState(ctx, s.rdb)
			ids = []string{id}
		}
		st.Received = s.wall()
		if err != nil {
			return st, err
		}
		sort.Strings(ids)
		st.Incarnation = strings.Join(ids, ",")
		return st, nil
	})
}

// clusterIncarnations returns the incarnation of every master.
func clusterIncarnations(ctx context.Context, cc *redis.ClusterClient) ([]string, error) {
	var mu sync.Mutex // ForEachMaster calls fn on every master at once
	var ids []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		id, _, err := nodeState(ctx, node)
		if err == nil {
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
		return err
	})
	return ids, err
}

// nodeState reads one server's run id, replication id and clock in one
// round trip.
func nodeState(ctx context.Context, c redis.Cmdable) (id string, now time.Time, err error) {
	var info *redis.StringCmd
	var tm *redis.TimeCmd
	_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		info = p.Info(ctx, "server", "replication")
		tm = p.Time(ctx)
		return nil
	})
	if err != nil {
		return "", time.Time{}, err
	}
	fields := infoFields(info.Val(), "run_id", "master_replid")
	if fields["run_id"] == "" {
		return "", time.Time{}, fmt.Errorf("tiercache: INFO has no run_id")
	}
	return fields["run_id"] + "/" + fields["master_replid"], tm.Val(), nil
}

// infoFields picks fields out of an INFO reply.
func infoFields(info string, names ...string) map[string]string {
	out := make(map[string]string, len(names))
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				out[n] = v
			}
		}
	}
	return out
}
