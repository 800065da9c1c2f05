package tiered

import (
	"encoding/json"
	"fmt"
)

// Codec turns values into the bytes stored in Redis and back. Unmarshal must
// not retain data: the slice aliases a buffer the cache reuses.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte, v *V) error
}

// JSON is the default codec for every V but []byte and string.
type JSON[V any] struct{}

// Marshal encodes v with encoding/json.
func (JSON[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with encoding/json.
func (JSON[V]) Unmarshal(data []byte, v *V) error { return json.Unmarshal(data, v) }

// Raw is the default codec for []byte and string values: the bytes are
// stored as they are.
type Raw[V ~[]byte | ~string] struct{}

// Marshal returns v's bytes.
func (Raw[V]) Marshal(v V) ([]byte, error) { return []byte(v), nil }

// Unmarshal copies data into v.
func (Raw[V]) Unmarshal(data []byte, v *V) error {
	*v = V(append([]byte(nil), data...))
	return nil
}

// defaultCodec picks Raw for []byte and string, JSON for everything else.
func defaultCodec[V any]() Codec[V] {
	var zero V
	switch any(zero).(type) {
	case []byte:
		return any(Raw[[]byte]{}).(Codec[V])
	case string:
		return any(Raw[string]{}).(Codec[V])
	}
	return JSON[V]{}
}

// codecError marks a value the codec could not encode.
func codecError(op string, err error) error {
	return fmt.Errorf("tiercache: codec cannot %s value: %w", op, err)
}
