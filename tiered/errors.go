package tiered

import (
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

var (
	// ErrNotFound is returned by Get when a value is in no tier and the
	// Loader (if any) reported it absent. A Loader reports absence by
	// returning an error for which errors.Is(err, ErrNotFound) holds.
	ErrNotFound = errors.New("tiercache: not found")

	// ErrInvalidKey is returned, wrapped with the reason, for ids, group and
	// keyspace names that cannot become Redis keys. No Redis call is made.
	ErrInvalidKey = keys.ErrInvalidKey

	// ErrClosed is returned by calls made after Client.Close.
	ErrClosed = errors.New("tiercache: client closed")

	// ErrValueTooLarge is returned by Set when the encoded value is larger
	// than the keyspace's MaxValueSize. Nothing is sent to Redis.
	ErrValueTooLarge = errors.New("tiercache: value too large")

	// ErrCorrupt marks bytes in Redis that are not a valid envelope or that
	// the codec cannot decode. Reads treat them as a miss (and count them in
	// Stats.Corrupt); the next fill overwrites them.
	ErrCorrupt = remote.ErrCorrupt

	// ErrLoaderPanic is returned (wrapped with the panic value) to every
	// caller waiting on a Loader that panicked.
	ErrLoaderPanic = errors.New("tiercache: loader panicked")
)

// OpError is the error of a Set, Delete, InvalidateGroup or Flush that could
// not complete. It names the operation and the key.
type OpError struct {
	Op  string // "get", "set", "delete", "invalidate group", "invalidate all", "flush"
	Key string // the Redis key (or first key) concerned
	Err error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("tiercache: %s %q: %v", e.Op, e.Key, e.Err)
}

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }
