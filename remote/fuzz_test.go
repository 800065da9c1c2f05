package remote

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeEnvelope checks that DecodeEnvelope never panics, fails only with
// ErrCorrupt, and accepts only canonical bytes: every field of the format is
// kept in Envelope, so whatever decodes re-encodes to exactly the input. The
// committed corpus is in testdata/fuzz/FuzzDecodeEnvelope.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, e := range envelopes() {
		if len(e.Payload) <= 64 {
			e := e
			f.Add(AppendEnvelope(nil, &e))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{envMagic})
	f.Add([]byte(`{"id":1,"name":"not an envelope"}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		e, err := DecodeEnvelope(b)
		if !bytes.Equal(b, in) {
			t.Fatalf("DecodeEnvelope modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if e.Negative() && len(e.Payload) != 0 {
			t.Fatalf("accepted a negative entry with %d payload bytes", len(e.Payload))
		}
		if out := AppendEnvelope(nil, &e); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, out)
		}
	})
}
