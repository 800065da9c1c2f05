package keys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// Sep separates the parts of a key, following the Redis convention.
const Sep = ":"

// MaxLen is the maximum length in bytes of a key part and of a full key.
// Redis accepts keys up to 512 MB, but every byte of a key is stored with the
// value, hashed on every lookup, sent on every invalidation and printed by
// tools such as redis-cli and MONITOR; a small bound keeps all of that cheap.
// Longer input should go through Hash.
const MaxLen = 1024

// ErrInvalidKey is wrapped by every error that reports a key or key part that
// cannot be used.
var ErrInvalidKey = errors.New("tiercache: invalid key")

// Byte classes for the validation loop; a table keeps the ASCII fast path to
// one load and one compare per byte.
const (
	byteOK       = iota
	byteNonASCII // start of a multi-byte (or invalid) UTF-8 sequence
	byteControl
	byteBrace
	byteSep // only rejected by ValidateName
)

var partClass, nameClass = byteClasses()

func byteClasses() (part, name [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c < 0x20 || c == 0x7f:
			part[c] = byteControl
		case c == '{' || c == '}':
			part[c] = byteBrace
		case c >= utf8.RuneSelf:
			part[c] = byteNonASCII
		}
	}
	name = part
	name[Sep[0]] = byteSep
	return part, name
}

// Validate reports whether part can be used as one part of a key (an id or a
// namespace). A part must be non-empty, at most MaxLen bytes, valid UTF-8,
// free of ASCII control characters (0x00-0x1F, 0x7F) and free of '{' and '}',
// which are reserved for the hash tags the library places itself. Sep is
// allowed. The error wraps ErrInvalidKey and names the problem and its byte
// offset.
//
// Validate does not allocate when part is valid.
func Validate(part string) error {
	return validate(part, &partClass)
}

// ValidateName is Validate for a namespace or keyspace name, which must in
// addition not contain Sep: a name with a separator would make "a:b" + "c"
// and "a" + "b:c" the same key.
func ValidateName(name string) error {
	return validate(name, &nameClass)
}

func validate(s string, class *[256]uint8) error {
	if len(s) == 0 {
		return invalid(s, "empty")
	}
	if len(s) > MaxLen {
		return invalid(s, fmt.Sprintf("length %d exceeds MaxLen %d", len(s), MaxLen))
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch class[c] {
		case byteOK:
			i++
		case byteNonASCII:
			// Decode only here, so ASCII keys never pay for UTF-8 decoding.
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return invalid(s, fmt.Sprintf("invalid UTF-8 byte 0x%02x at byte %d", c, i))
			}
			i += size
		case byteControl:
			return invalid(s, fmt.Sprintf("control character 0x%02x at byte %d", c, i))
		case byteBrace:
			return invalid(s, fmt.Sprintf("reserved character %q at byte %d (hash tags are placed by the library)", c, i))
		default: // byteSep
			return invalid(s, fmt.Sprintf("separator %q at byte %d (not allowed in a name)", c, i))
		}
	}
	return nil
}

// quoteMax bounds how much of a bad key goes into an error, so a huge key
// does not flood the logs.
const quoteMax = 64

func invalid(s, why string) error {
	return fmt.Errorf("%w %s: %s", ErrInvalidKey, quote(s), why)
}

func quote(s string) string {
	if len(s) <= quoteMax {
		return strconv.Quote(s)
	}
	cut := quoteMax
	// Cut on a rune boundary so the quote shows no invented bad bytes.
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// Join validates every part and joins them with Sep. The joined key must also
// be at most MaxLen bytes. Join with no parts is an error.
func Join(parts ...string) (string, error) {
	if len(parts) == 0 {
		return "", invalid("", "no parts")
	}
	n := len(parts) - 1
	for i, p := range parts {
		if err := Validate(p); err != nil {
			return "", fmt.Errorf("keys: join part %d: %w", i, err)
		}
		n += len(p)
	}
	if n > MaxLen {
		return "", invalid(strings.Join(parts, Sep), fmt.Sprintf("joined length %d exceeds MaxLen %d", n, MaxLen))
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range parts {
		if i > 0 {
			b.WriteString(Sep)
		}
		b.WriteString(p)
	}
	return b.String(), nil
}

// Hash returns the xxhash64 of s as 16 lowercase hex digits, zero padded. Use
// it to turn unbounded user input into a key part: "search:" + Hash(query).
func Hash(s string) string {
	return hex16(xxhash.Sum64String(s))
}

// HashBytes is Hash for a byte slice.
func HashBytes(b []byte) string {
	return hex16(xxhash.Sum64(b))
}

func hex16(h uint64) string {
	const digits = "0123456789abcdef"
	var buf [16]byte
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = digits[h&0xf]
		h >>= 4
	}
	return string(buf[:])
}

// Key returns ns + Sep + id. It does not validate; callers validate ns and id
// once, where they enter the library.
func Key(ns, id string) string {
	return ns + Sep + id
}

// ValueKey returns the Redis key of id's value in namespace ns, under the
// namespace's epoch and the id's group version (0: the id has no group):
//
//	<ns>:<epoch>:<version>:<id>
//
// Every field before the id is always there and none can contain Sep (a
// namespace is validated with ValidateName, the numbers are decimal), so the
// id is everything after the third Sep: distinct (ns, epoch, version, id)
// give distinct keys whatever the id holds. It does not validate.
func ValueKey(ns string, epoch, version uint64, id string) string {
	var num [2 * 20]byte // two uint64s have at most 20 decimal digits each
	n := strconv.AppendUint(num[:0], epoch, 10)
	n = append(n, Sep...)
	n = strconv.AppendUint(n, version, 10)
	var b strings.Builder
	b.Grow(len(ns) + len(n) + 2*len(Sep) + len(id))
	b.WriteString(ns)
	b.WriteString(Sep)
	b.Write(n)
	b.WriteString(Sep)
	b.WriteString(id)
	return b.String()
}

// EpochKey returns the Redis key that holds the epoch of namespace ns:
// "{" + ns + ":epoch}". Like VersionKey it starts with '{'.
func EpochKey(ns string) string {
	return "{" + ns + Sep + "epoch}"
}

// IncarnationKey returns the key beside an epoch key that records which
// incarnation of the server's data the epoch was written under:
// epochKey + ":incarnation", in the same Redis Cluster slot.
func IncarnationKey(epochKey string) string {
	return epochKey + Sep + "incarnation"
}

// VersionKey returns the Redis key that holds the version of group in
// namespace ns: "{" + ns + ":gv:" + group + "}". It starts with '{', which no
// validated user part contains, so no user key can collide with it.
func VersionKey(ns, group string) string {
	return "{" + ns + Sep + "gv" + Sep + group + "}"
}

// LeaseKey returns the key of the lease that guards the fill of valueKey:
// "{" + valueKey + "}:lease". A valid valueKey contains no braces, so Redis
// Cluster hashes the lease key by its hash tag, which is valueKey itself:
// remote.Slot(LeaseKey(k)) == remote.Slot(k), and one Lua script or MULTI
// may touch both.
// valueKey must be non-empty and brace-free (Validate or Join ensure it).
func LeaseKey(valueKey string) string {
	return "{" + valueKey + "}" + Sep + "lease"
}
