package invalidation

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

const (
	magic         = 0xC5
	formatVersion = 1
	// headerLen covers magic, version, node id and kind.
	headerLen = 2 + len(NodeID{}) + 1
)

// MaxMessageSize is the largest payload Split produces unless a single item
// is larger on its own. Batches beyond it are split so that one PUBLISH stays
// small: Redis copies each message into the output buffer of every
// subscriber, and a burst of large messages would hit its pubsub
// client-output-buffer-limit and get subscribers disconnected.
const MaxMessageSize = 64 << 10

// ErrMalformed is returned by Decode for a payload that is not a valid
// message (truncated, bad length, bad kind, trailing bytes...), and by Encode
// and Split for a Message that cannot be encoded.
var ErrMalformed = errors.New("tiercache: malformed invalidation message")

// ErrForeign is returned by Decode for a payload that does not start with the
// magic byte: something other than tiercache published on the channel.
var ErrForeign = errors.New("tiercache: foreign message on invalidation channel")

// ErrVersion is returned by Decode for a message in a format version this
// build does not know, typically sent by a newer peer during a rolling
// upgrade.
var ErrVersion = errors.New("tiercache: unknown invalidation message version")

// NodeID identifies the process (Client) that published a message, so that a
// process can ignore its own.
type NodeID [16]byte

// NewNodeID returns a random id from crypto/rand. 128 random bits make a
// collision between processes practically impossible, which a clock- or
// pid-derived id would not guarantee across hosts and restarts.
func NewNodeID() (NodeID, error) {
	var n NodeID
	if _, err := rand.Read(n[:]); err != nil {
		return NodeID{}, fmt.Errorf("tiercache: new node id: %w", err)
	}
	return n, nil
}

// String returns the id in lower-case hex.
func (n NodeID) String() string { return hex.EncodeToString(n[:]) }

// Kind says what a Message asks its receivers to do.
type Kind uint8

// The kinds of message.
const (
	// KindKeys evicts the listed ids of the keyspace.
	KindKeys Kind = 1
	// KindBump reports that the listed version groups of the keyspace were
	// bumped; Versions holds the new version of each.
	KindBump Kind = 2
	// KindFlush evicts the whole keyspace; it has no items.
	KindFlush Kind = 3
	// KindFlushAll evicts every keyspace; its keyspace is empty and it has
	// no items.
	KindFlushAll Kind = 4
)

// String returns the kind's name, or "Kind(n)" for an unknown value.
func (k Kind) String() string {
	switch k {
	case KindKeys:
		return "keys"
	case KindBump:
		return "bump"
	case KindFlush:
		return "flush"
	case KindFlushAll:
		return "flushall"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

func (k Kind) valid() bool { return k >= KindKeys && k <= KindFlushAll }

// Message is one invalidation as it travels on the bus.
type Message struct {
	// Node is the publisher.
	Node NodeID
	// Kind says what to invalidate.
	Kind Kind
	// Keyspace is the namespace the items belong to; empty for KindFlushAll
	// only.
	Keyspace string
	// Keys holds, for KindKeys, the ids (not the full Redis keys) to evict;
	// for KindBump, the names of the bumped version groups. Empty for the
	// flush kinds.
	Keys []string
	// Versions is for KindBump only: Versions[i] is the new version of the
	// group Keys[i]. Nil for the other kinds.
	Versions []uint64
}

// check reports why m cannot be encoded, if it cannot. Decode enforces the
// same rules, so that everything Encode writes decodes and vice versa.
func (m *Message) check() error {
	if !m.Kind.valid() {
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, m.Kind)
	}
	if m.Kind == KindFlushAll {
		if m.Keyspace != "" {
			return fmt.Errorf("%w: %v with keyspace %q", ErrMalformed, m.Kind, m.Keyspace)
		}
	} else if m.Keyspace == "" {
		return fmt.Errorf("%w: %v with empty keyspace", ErrMalformed, m.Kind)
	}
	if (m.Kind == KindFlush || m.Kind == KindFlushAll) && len(m.Keys) > 0 {
		return fmt.Errorf("%w: %v with %d items", ErrMalformed, m.Kind, len(m.Keys))
	}
	if m.Kind == KindBump {
		if len(m.Versions) != len(m.Keys) {
			return fmt.Errorf("%w: bump with %d keys and %d versions", ErrMalformed, len(m.Keys), len(m.Versions))
		}
	} else if len(m.Versions) > 0 {
		return fmt.Errorf("%w: %v with versions", ErrMalformed, m.Kind)
	}
	return nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// prefixLen is the size of everything before the item count.
func (m *Message) prefixLen() int {
	return headerLen + uvarintLen(uint64(len(m.Keyspace))) + len(m.Keyspace)
}

// itemLen is the encoded size of item i.
func (m *Message) itemLen(i int) int {
	n := uvarintLen(uint64(len(m.Keys[i]))) + len(m.Keys[i])
	if m.Kind == KindBump {
		n += uvarintLen(m.Versions[i])
	}
	return n
}

// Encode appends the encoding of m to dst and returns the extended slice. It
// fails, leaving dst as it was, with an error wrapping ErrMalformed if the
// kind is unknown, the keyspace is empty (or not, for KindFlushAll), a flush
// carries items, or Versions does not match Keys.
func Encode(dst []byte, m *Message) ([]byte, error) {
	if err := m.check(); err != nil {
		return dst, fmt.Errorf("encode: %w", err)
	}
	n := m.prefixLen() + uvarintLen(uint64(len(m.Keys)))
	for i := range m.Keys {
		n += m.itemLen(i)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, magic, formatVersion)
	dst = append(dst, m.Node[:]...)
	dst = append(dst, byte(m.Kind))
	dst = binary.AppendUvarint(dst, uint64(len(m.Keyspace)))
	dst = append(dst, m.Keyspace...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Keys)))
	for i, k := range m.Keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		if m.Kind == KindBump {
			dst = binary.AppendUvarint(dst, m.Versions[i])
		}
	}
	return dst, nil
}

// Split encodes m into one or more payloads of at most limit bytes each
// (MaxMessageSize if limit <= 0), every one a complete message with the same
// header, whose items in order are exactly m's. An item too large to fit
// within limit even alone is still sent, alone in its own payload, which is
// then larger than limit: an invalidation is never dropped. A message without
// items (the flush kinds, or empty Keys) gives exactly one payload.
func Split(m *Message, limit int) ([][]byte, error) {
	if limit <= 0 {
		limit = MaxMessageSize
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	if len(m.Keys) == 0 {
		b, err := Encode(nil, m)
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		return [][]byte{b}, nil
	}
	prefix := m.prefixLen()
	var out [][]byte
	for i := 0; i < len(m.Keys); {
		j, size := i, prefix
		for j < len(m.Keys) {
			n := m.itemLen(j)
			// The count grows with the batch; its width is part of the size.
			if j > i && size+n+uvarintLen(uint64(j-i+1)) > limit {
				break
			}
			size += n
			j++
		}
		part := *m
		part.Keys = m.Keys[i:j]
		if m.Kind == KindBump {
			part.Versions = m.Versions[i:j]
		}
		b, err := Encode(make([]byte, 0, size+uvarintLen(uint64(j-i))), &part)
		if err != nil {
			return nil, fmt.Errorf("split: %w", err)
		}
		out = append(out, b)
		i = j
	}
	return out, nil
}

// Decode parses one Pub/Sub payload. The strings of the result are copies,
// so the caller may reuse b. Errors wrap ErrForeign (wrong magic), ErrVersion
// (unknown format version) or ErrMalformed, and say what is wrong and where.
// Decode accepts exactly what Encode produces: shortest-form uvarints only,
// no trailing bytes. It never panics, and it allocates in proportion to the
// payload size, whatever lengths the payload claims.
func Decode(b []byte) (Message, error) {
	var m Message
	if len(b) == 0 {
		return m, fmt.Errorf("decode: %w: empty payload", ErrMalformed)
	}
	if b[0] != magic {
		return m, fmt.Errorf("decode: %w: first byte %#x", ErrForeign, b[0])
	}
	if len(b) < 2 {
		return m, fmt.Errorf("decode: %w: truncated before version", ErrMalformed)
	}
	if b[1] != formatVersion {
		return m, fmt.Errorf("decode: %w: version %d, want %d", ErrVersion, b[1], formatVersion)
	}
	if len(b) < headerLen {
		return m, fmt.Errorf("decode: %w: header truncated to %d bytes", ErrMalformed, len(b))
	}
	copy(m.Node[:], b[2:18])
	m.Kind = Kind(b[18])
	if !m.Kind.valid() {
		return m, fmt.Errorf("decode: %w: unknown kind %d", ErrMalformed, b[18])
	}
	r := reader{b: b, off: headerLen}
	ks, err := r.bytes("keyspace")
	if err != nil {
		return m, err
	}
	m.Keyspace = string(ks)
	count, err := r.uvarint("item count")
	if err != nil {
		return m, err
	}
	// Each item takes at least one byte (two for Bump), so a count larger
	// than that is a lie; refusing it here bounds the allocations below.
	minItem := uint64(1)
	if m.Kind == KindBump {
		minItem = 2
	}
	if count > uint64(len(b)-r.off)/minItem {
		return m, fmt.Errorf("decode: %w: item count %d does not fit in the %d bytes left", ErrMalformed, count, len(b)-r.off)
	}
	if count > 0 {
		m.Keys = make([]string, count)
		if m.Kind == KindBump {
			m.Versions = make([]uint64, count)
		}
	}
	for i := range m.Keys {
		k, err := r.bytes("item " + strconv.Itoa(i))
		if err != nil {
			return m, err
		}
		m.Keys[i] = string(k)
		if m.Kind == KindBump {
			if m.Versions[i], err = r.uvarint("version of item " + strconv.Itoa(i)); err != nil {
				return m, err
			}
		}
	}
	if r.off != len(b) {
		return m, fmt.Errorf("decode: %w: %d trailing bytes at offset %d", ErrMalformed, len(b)-r.off, r.off)
	}
	if err := m.check(); err != nil {
		return m, fmt.Errorf("decode: %w", err)
	}
	return m, nil
}

// reader walks a payload, checking every read against what remains.
type reader struct {
	b   []byte
	off int
}

// uvarint reads a shortest-form uvarint. Non-minimal forms (a trailing 0x80
// 0x00, say) are refused so that every message has a single encoding.
func (r *reader) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("decode: %w: truncated %s at offset %d", ErrMalformed, what, r.off)
	case n < 0:
		return 0, fmt.Errorf("decode: %w: %s overflows 64 bits at offset %d", ErrMalformed, what, r.off)
	case n > 1 && r.b[r.off+n-1] == 0:
		return 0, fmt.Errorf("decode: %w: %s not in shortest form at offset %d", ErrMalformed, what, r.off)
	}
	r.off += n
	return v, nil
}

// bytes reads a length-prefixed byte string; the result aliases r.b.
func (r *reader) bytes(what string) ([]byte, error) {
	start := r.off
	n, err := r.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if left := uint64(len(r.b) - r.off); n > left {
		return nil, fmt.Errorf("decode: %w: %s length %d at offset %d exceeds the %d bytes left", ErrMalformed, what, n, start, left)
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}
