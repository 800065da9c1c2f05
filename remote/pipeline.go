package remote

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one script with its keys and arguments.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []interface{}
}

// runPipelined runs scripts by EVALSHA in one pipeline (one call alone is
// not pipelined) and re-sends, by EVAL, those the server did not know (after
// a restart or failover).
func (s *Store) runPipelined(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	if len(calls) == 1 {
		c := calls[0]
		cmd := c.script.Run(ctx, s.rdb, c.keys, c.args...)
		if err := cmd.Err(); err != nil {
			return nil, err
		}
		return []*redis.Cmd{cmd}, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	exec := func(which []int, useEval bool) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range which {
				c := calls[i]
				if useEval {
					cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
				} else {
					cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
				}
			}
			return nil
		})
		return err
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	err := exec(all, false)
	if err == nil {
		return cmds, nil
	}
	var missing []int
	for i, c := range cmds {
		if e := c.Err(); e != nil && strings.HasPrefix(e.Error(), "NOSCRIPT") {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil, err
	}
	if err := exec(missing, true); err != nil {
		return nil, err
	}
	return cmds, firstErr(cmds)
}

func firstErr(cmds []*redis.Cmd) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}
