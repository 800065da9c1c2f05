package remote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// envelopes is a spread of valid envelopes: every field at its extremes.
func envelopes() map[string]Envelope {
	return map[string]Envelope{
		"zero":             {},
		"plain":            {FreshUntil: 1_700_000_000_123, Delta: 42 * time.Millisecond, Payload: []byte(`{"id":1}`)},
		"negative entry":   {Flags: FlagNegative, FreshUntil: 1_700_000_000_000, Delta: 7 * time.Millisecond},
		"negative time":    {FreshUntil: -1, Payload: []byte("x")},
		"min time":         {FreshUntil: math.MinInt64, Payload: []byte("y")},
		"max time":         {FreshUntil: math.MaxInt64, Delta: math.MaxUint32 * time.Millisecond, Payload: []byte("z")},
		"versioned":        {FreshUntil: 3, Version: 1<<63 + 5, Payload: []byte("v")},
		"compressed flag":  {Flags: FlagCompressed, FreshUntil: 3, Payload: []byte("s2 bytes")},
		"unknown flags":    {Flags: 0xFE, FreshUntil: 1, Payload: []byte("flags other than negative are kept")},
		"empty payload":    {FreshUntil: 5, Payload: []byte{}},
		"large payload":    {FreshUntil: 9, Delta: 1000 * time.Millisecond, Payload: bytes.Repeat([]byte("0123456789abcdef"), 1<<16)},
		"magic in payload": {Payload: []byte{envMagic, envVersion, 0, 0}},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for name, in := range envelopes() {
		in := in
		t.Run(name, func(t *testing.T) {
			b := AppendEnvelope(nil, &in)
			if len(b) != len(in.Payload)+EnvelopeOverhead {
				t.Fatalf("encoded %d bytes; want payload %d + overhead %d", len(b), len(in.Payload), EnvelopeOverhead)
			}
			out, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatalf("DecodeEnvelope: %v", err)
			}
			if out.Flags != in.Flags || out.FreshUntil != in.FreshUntil || out.Delta != in.Delta || out.Version != in.Version {
				t.Fatalf("header = {%#x %d %d %d}; want {%#x %d %d %d}",
					out.Flags, out.FreshUntil, out.Delta, out.Version, in.Flags, in.FreshUntil, in.Delta, in.Version)
			}
			if !bytes.Equal(out.Payload, in.Payload) {
				t.Fatalf("payload of %d bytes differs from the %d bytes encoded", len(out.Payload), len(in.Payload))
			}
			if out.Negative() != (in.Flags&FlagNegative != 0) {
				t.Fatalf("Negative() = %v for flags %#x", out.Negative(), in.Flags)
			}
		})
	}
}

// TestEnvelopeLayout pins the byte layout the scripts read on the server
// (magic at byte 0, version 2 at byte 1, fresh-until big-endian at bytes
// 3..10, the value's version at bytes 15..22): changing
// it without changing the script would make every value look fresh or stale.
func TestEnvelopeLayout(t *testing.T) {
	b := AppendEnvelope(nil, &Envelope{Flags: FlagNegative, FreshUntil: 0x0102030405060708, Delta: 0x0A0B0C0D * time.Millisecond, Version: 0x1112131415161718})
	want := []byte{envMagic, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 0, 0, 0}
	if !bytes.Equal(b[:envHeaderSize], want) {
		t.Fatalf("header = % x; want % x", b[:envHeaderSize], want)
	}
}

func TestEnvelopeTruncated(t *testing.T) {
	for name, e := range envelopes() {
		if len(e.Payload) > 64 {
			continue // every prefix of a 1 MiB payload adds time, not coverage
		}
		b := AppendEnvelope(nil, &e)
		for n := 0; n < len(b); n++ {
			if _, err := DecodeEnvelope(b[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: DecodeEnvelope of the first %d of %d bytes = %v; want ErrCorrupt", name, n, len(b), err)
			}
		}
		if _, err := DecodeEnvelope(append(b[:len(b):len(b)], 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: DecodeEnvelope with a trailing byte = %v; want ErrCorrupt", name, err)
		}
	}
}

func TestEnvelopeBitFlip(t *testing.T) {
	for name, e := range envelopes() {
		if len(e.Payload) > 64 {
			continue
		}
		b := AppendEnvelope(nil, &e)
		for i := range b {
			for bit := 0; bit < 8; bit++ {
				c := bytes.Clone(b)
				c[i] ^= 1 << bit
				if got, err := DecodeEnvelope(c); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: flip of bit %d of byte %d decoded to %+v, %v; want ErrCorrupt", name, bit, i, got, err)
				}
			}
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	valid := AppendEnvelope(nil, &Envelope{FreshUntil: 1, Payload: []byte("v")})
	cases := map[string]struct {
		b    []byte
		want string // a word the error must contain
	}{
		"nil":                     {nil, "shorter"},
		"header only":             {valid[:envHeaderSize], "shorter"},
		"json":                    {[]byte(`{"id":1,"name":"a value written by another program"}`), "magic"},
		"foreign magic":           {resummed(valid, func(b []byte) { b[0] = '{' }), "magic"},
		"other version":           {resummed(valid, func(b []byte) { b[1] = envVersion + 1 }), "version"},
		"version zero":            {resummed(valid, func(b []byte) { b[1] = 0 }), "version"},
		"negative with a payload": {AppendEnvelope(nil, &Envelope{Flags: FlagNegative | 0x80, Payload: []byte("x")}), "negative"},
		"length too large":        {resummed(valid, func(b []byte) { binary.BigEndian.PutUint32(b[23:], 2) }), "length"},
		"length too small":        {resummed(valid, func(b []byte) { binary.BigEndian.PutUint32(b[23:], 0) }), "length"},
		"length huge":             {resummed(valid, func(b []byte) { binary.BigEndian.PutUint32(b[23:], math.MaxUint32) }), "length"},
		"checksum":                {resummed(valid, func(b []byte) { b[envHeaderSize] = 'w' }), ""},
	}
	// "checksum" is the one case resummed does not fix: flip after summing.
	c := cases["checksum"]
	c.b[len(c.b)-1] ^= 1
	c.want = "checksum"
	cases["checksum"] = c
	for name, c := range cases {
		_, err := DecodeEnvelope(c.b)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v; want ErrCorrupt", name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %q; want it to mention %q", name, err, c.want)
		}
	}
	if _, err := DecodeEnvelope(AppendEnvelope(nil, &Envelope{Flags: FlagNegative})); err != nil {
		t.Errorf("negative entry without payload: %v", err)
	}
}

// resummed returns a copy of the envelope b changed by edit, with a checksum
// that matches the change: only the edited defect remains to be detected.
func resummed(b []byte, edit func([]byte)) []byte {
	c := bytes.Clone(b)
	edit(c)
	end := len(c) - envTrailer
	binary.BigEndian.PutUint32(c[end:], uint32(xxhash.Sum64(c[:end])))
	return c
}

// TestEnvelopePayloadAliases documents that DecodeEnvelope does not copy:
// Payload shares the input's memory (Store hands it a read-only view of the
// reply string, so nothing may write to either), and its capacity ends at
// the payload, so an append to it cannot overwrite the checksum.
func TestEnvelopePayloadAliases(t *testing.T) {
	b := AppendEnvelope(nil, &Envelope{Payload: []byte("abc")})
	e, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	b[envHeaderSize] = 'X'
	if string(e.Payload) != "Xbc" {
		t.Fatalf("Payload = %q after the input changed; want %q (aliasing)", e.Payload, "Xbc")
	}
	if cap(e.Payload) != len(e.Payload) {
		t.Fatalf("cap(Payload) = %d; want %d so appends reallocate", cap(e.Payload), len(e.Payload))
	}
	sum := bytes.Clone(b[len(b)-envTrailer:])
	_ = append(e.Payload, "more"...)
	if !bytes.Equal(b[len(b)-envTrailer:], sum) {
		t.Fatalf("append to Payload overwrote the checksum")
	}
}

func TestAppendEnvelopeToNonEmpty(t *testing.T) {
	e := Envelope{Flags: FlagNegative, FreshUntil: 123, Delta: 4 * time.Millisecond}
	alone := AppendEnvelope(nil, &e)
	e2 := Envelope{FreshUntil: 99, Payload: []byte("second")}
	alone2 := AppendEnvelope(nil, &e2)

	prefix := []byte("some bytes already there")
	for _, dst := range [][]byte{bytes.Clone(prefix), append(make([]byte, 0, 256), prefix...)} {
		out := AppendEnvelope(dst, &e)
		out = AppendEnvelope(out, &e2)
		if !bytes.Equal(out[:len(prefix)], prefix) {
			t.Fatalf("prefix changed: %q", out[:len(prefix)])
		}
		// The checksum covers the envelope only, not what precedes it.
		rest := out[len(prefix):]
		if !bytes.Equal(rest[:len(alone)], alone) || !bytes.Equal(rest[len(alone):], alone2) {
			t.Fatalf("appended envelopes differ from standalone ones:\n got % x\nwant % x % x", rest, alone, alone2)
		}
		if _, err := DecodeEnvelope(rest[len(alone):]); err != nil {
			t.Fatalf("second envelope: %v", err)
		}
	}
}
