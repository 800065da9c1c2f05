package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Envelope layout (version 2), all integers big-endian:
//
//	offset size field
//	0      1    magic 0xC4 (bytes written by something else are refused)
//	1      1    format version (2)
//	2      1    flags (bit 0: negative entry, the loader said "not found";
//	            bit 1: the payload is S2-compressed)
//	3      8    fresh-until, Unix milliseconds of the Redis server's clock
//	            (not the writer's): after it the value is stale
//	11     4    delta, milliseconds the loader took (for early refresh)
//	15     8    the value's version (Config.VersionOf; 0 without), compared
//	            by the write scripts as 8 big-endian bytes
//	23     4    payload length n
//	27     n    payload (the codec's bytes, compressed when flagged)
//	27+n   4    checksum: low 32 bits of xxhash64 of bytes [0, 27+n)
//
// The length and checksum make truncated or bit-flipped values a detected
// miss rather than a wrong value. Version 1 (fresh-until on the writer's
// clock, keys without epoch and version fields) is refused as foreign: its
// keys are another key space, which this version never reads.
const (
	envMagic      = 0xC4
	envVersion    = 2
	envHeaderSize = 27
	envTrailer    = 4
	// EnvelopeOverhead is the number of bytes an envelope adds to a payload.
	EnvelopeOverhead = envHeaderSize + envTrailer
)

// Flag bits of Envelope.Flags.
const (
	// FlagNegative marks a cached "not found": the payload is empty.
	FlagNegative uint8 = 1 << 0
	// FlagCompressed marks an S2-compressed payload.
	FlagCompressed uint8 = 1 << 1
)

// ErrCorrupt is returned (wrapped, with the reason) for bytes in Redis that
// are not a valid envelope: truncated, bit-flipped, foreign, or written by an
// incompatible version. Callers treat it as a miss and overwrite the value.
var ErrCorrupt = errors.New("tiercache: corrupt or foreign value in Redis")

// UnixMilli is a wall time as Redis stores it: milliseconds since the Unix
// epoch.
type UnixMilli int64

// ToUnixMilli returns t in milliseconds since the Unix epoch.
func ToUnixMilli(t time.Time) UnixMilli { return UnixMilli(t.UnixMilli()) }

// Time returns t as a time.Time.
func (t UnixMilli) Time() time.Time { return time.UnixMilli(int64(t)) }

// Envelope is what the cache stores under a value key.
type Envelope struct {
	Flags      uint8
	FreshUntil UnixMilli     // after it the value is stale
	Delta      time.Duration // how long the load took; stored in whole ms, at most 2^32-1
	Version    uint64        // the value's version (Config.VersionOf), 0 without
	Payload    []byte        // codec output; aliases the decoded buffer
}

// VersionBytes is v as the write scripts compare it: 8 big-endian bytes,
// whose byte order is their numeric order.
func VersionBytes(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return string(b[:])
}

// Negative reports whether the envelope caches a "not found".
func (e *Envelope) Negative() bool { return e.Flags&FlagNegative != 0 }

// AppendEnvelope appends the encoding of e to dst.
func AppendEnvelope(dst []byte, e *Envelope) []byte {
	start := len(dst)
	var h [envHeaderSize]byte
	h[0] = envMagic
	h[1] = envVersion
	h[2] = e.Flags
	binary.BigEndian.PutUint64(h[3:], uint64(e.FreshUntil))
	binary.BigEndian.PutUint32(h[11:], uint32(min(max(e.Delta.Milliseconds(), 0), math.MaxUint32)))
	binary.BigEndian.PutUint64(h[15:], e.Version)
	binary.BigEndian.PutUint32(h[23:], uint32(len(e.Payload)))
	dst = append(dst, h[:]...)
	dst = append(dst, e.Payload...)
	sum := uint32(xxhash.Sum64(dst[start:]))
	return binary.BigEndian.AppendUint32(dst, sum)
}

// DecodeEnvelope parses b. The returned Payload aliases b. Errors wrap
// ErrCorrupt and name what is wrong; DecodeEnvelope never panics.
func DecodeEnvelope(b []byte) (Envelope, error) {
	if len(b) < envHeaderSize+envTrailer {
		return Envelope{}, fmt.Errorf("%w: %d bytes is shorter than an envelope", ErrCorrupt, len(b))
	}
	if b[0] != envMagic {
		return Envelope{}, fmt.Errorf("%w: bad magic byte 0x%02x", ErrCorrupt, b[0])
	}
	if b[1] != envVersion {
		return Envelope{}, fmt.Errorf("%w: unsupported envelope version %d", ErrCorrupt, b[1])
	}
	n := binary.BigEndian.Uint32(b[23:])
	if uint64(n) != uint64(len(b)-envHeaderSize-envTrailer) {
		return Envelope{}, fmt.Errorf("%w: payload length %d does not match %d bytes present", ErrCorrupt, n, len(b)-envHeaderSize-envTrailer)
	}
	end := envHeaderSize + int(n)
	if want, got := binary.BigEndian.Uint32(b[end:]), uint32(xxhash.Sum64(b[:end])); want != got {
		return Envelope{}, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	e := Envelope{
		Flags:      b[2],
		FreshUntil: UnixMilli(binary.BigEndian.Uint64(b[3:])),
		Delta:      time.Duration(binary.BigEndian.Uint32(b[11:])) * time.Millisecond,
		Version:    binary.BigEndian.Uint64(b[15:]),
		Payload:    b[envHeaderSize:end:end],
	}
	if e.Negative() && n != 0 {
		return Envelope{}, fmt.Errorf("%w: negative entry with a payload", ErrCorrupt)
	}
	return e, nil
}
