package remote

import (
	"context"
)

// Versions of groups and epochs of keyspaces: counters that only grow, each
// part of the keys of the values they cover, so that one bump makes every
// covered value unreachable without enumerating them.

// Version returns the version stored at verKey, creating it when absent (see
// versionScript).
func (s *Store) Version(ctx context.Context, verKey string) (v uint64, err error) {
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) (uint64, error) {
		n, err := versionScript.Run(ctx, s.rdb, []string{verKey}).Int64()
		return uint64(n), err
	})
}

// Bump advances the version at verKey and publishes prefix followed by the
// new version as a uvarint, atomically. It returns the new version.
func (s *Store) Bump(ctx context.Context, verKey string, prefix []byte) (v uint64, err error) {
	return guarded(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) (uint64, error) {
		n, err := bumpScript.Run(ctx, s.rdb, []string{verKey}, s.opts.Channel, prefix).Int64()
		return uint64(n), err
	})
}
