package invalidation

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, fails only with one of the
// three sentinels, and is the exact inverse of Encode: the format is
// canonical (shortest uvarints, no trailing bytes), so whatever decodes
// re-encodes to the very same bytes. It also checks that Split of a decoded
// message yields the same items. The committed corpus is in
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, m := range validMessages() {
		b, err := Encode(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("hello, pubsub"))
	f.Add([]byte{magic, 2})

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForeign) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		enc, err := Encode(nil, &m)
		if err != nil {
			t.Fatalf("Encode of decoded %+v: %v", m, err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, enc)
		}
		payloads, err := Split(&m, 64)
		if err != nil {
			t.Fatalf("Split: %v", err)
		}
		var keys []string
		var versions []uint64
		for _, p := range payloads {
			part, err := Decode(p)
			if err != nil {
				t.Fatalf("Decode of split payload: %v", err)
			}
			keys = append(keys, part.Keys...)
			versions = append(versions, part.Versions...)
		}
		if len(keys) != len(m.Keys) || (len(keys) > 0 && !reflect.DeepEqual(keys, m.Keys)) ||
			(len(versions) > 0 && !reflect.DeepEqual(versions, m.Versions)) {
			t.Fatalf("Split changed the items of %+v", m)
		}
	})
}
