package keys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // substring of the error; "" means valid
	}{
		{"simple id", "user42", ""},
		{"one byte", "a", ""},
		{"separator allowed", "a:b:c", ""},
		{"printable ASCII", "a-b_c.d/e@f!g~h", ""},
		{"space allowed", "a b", ""},
		{"unicode", "héllo-世界-🙂", ""},
		{"U+FFFD literal is valid UTF-8", "a\uFFFDb", ""},
		{"exactly MaxLen", strings.Repeat("x", MaxLen), ""},
		{"exactly MaxLen multibyte", strings.Repeat("é", MaxLen/2), ""},
		{"empty", "", ": empty"},
		{"too long", strings.Repeat("x", MaxLen+1), "length 1025 exceeds MaxLen 1024"},
		{"NUL", "a\x00b", "control character 0x00 at byte 1"},
		{"control", "a\x01b", "control character 0x01 at byte 1"},
		{"newline", "ab\n", "control character 0x0a at byte 2"},
		{"tab", "\tab", "control character 0x09 at byte 0"},
		{"unit separator 0x1f", "ab\x1f", "control character 0x1f at byte 2"},
		{"DEL", "ab\x7f", "control character 0x7f at byte 2"},
		{"open brace", "a{b", "reserved character '{' at byte 1"},
		{"close brace", "ab}", "reserved character '}' at byte 2"},
		{"invalid UTF-8", "ab\xff", "invalid UTF-8 byte 0xff at byte 2"},
		{"truncated rune", "é"[:1], "invalid UTF-8 byte 0xc3 at byte 0"},
		{"overlong encoding", "a\xc0\xafb", "invalid UTF-8 byte 0xc0 at byte 1"},
		{"surrogate", "a\xed\xa0\x80", "invalid UTF-8 byte 0xed at byte 1"},
		{"first problem wins", "é\x01{", "control character 0x01 at byte 2"},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalidKey", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate(%q) = %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestValidateErrorText(t *testing.T) {
	const want = `tiercache: invalid key "a\x01b": control character 0x01 at byte 1`
	if err := Validate("a\x01b"); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestValidateErrorTruncatesKey(t *testing.T) {
	long := strings.Repeat("a", 100_000) + "\x01"
	err := Validate(long)
	if !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("got %v, want ErrInvalidKey", err)
	}
	if msg := err.Error(); len(msg) > 200 || !strings.Contains(msg, "(100001 bytes)") {
		t.Fatalf("error not truncated: %d bytes: %.300s", len(msg), msg)
	}

	// A cut inside a multi-byte rune must not show made-up bad bytes.
	long = "a" + strings.Repeat("é", 100) + "{"
	err = Validate(long)
	if msg := err.Error(); strings.Contains(msg, `\x`) {
		t.Fatalf("truncation split a rune: %s", msg)
	}
}

func TestValidateName(t *testing.T) {
	if err := ValidateName("users"); err != nil {
		t.Fatalf("ValidateName(users) = %v", err)
	}
	err := ValidateName("us:ers")
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "separator ':' at byte 2") {
		t.Fatalf("ValidateName(us:ers) = %v, want separator error", err)
	}
	// The part rules still apply.
	for _, bad := range []string{"", "a{b", "a\x7f", "\xff", strings.Repeat("n", MaxLen+1)} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}

func TestJoin(t *testing.T) {
	got, err := Join("users", "42", "profile")
	if err != nil || got != "users:42:profile" {
		t.Fatalf("Join = %q, %v", got, err)
	}
	if got, err := Join("only"); err != nil || got != "only" {
		t.Fatalf("Join(only) = %q, %v", got, err)
	}

	// Exactly MaxLen in total is fine, one byte more is not.
	half := strings.Repeat("x", (MaxLen-1)/2)
	if got, err := Join(half, half+"x"); err != nil || len(got) != MaxLen {
		t.Fatalf("Join at MaxLen: len %d, %v", len(got), err)
	}
	_, err = Join(half, half+"xx")
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "joined length 1025") {
		t.Fatalf("Join over MaxLen = %v", err)
	}

	_, err = Join("users", "a}b")
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "part 1") {
		t.Fatalf("Join with bad part = %v", err)
	}
	if _, err := Join("users", ""); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Join with empty part = %v", err)
	}
	if _, err := Join(); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Join() = %v", err)
	}
}

func TestHash(t *testing.T) {
	// xxhash64 of the empty input with seed 0 is a published constant.
	if got := Hash(""); got != "ef46db3751d8e999" {
		t.Fatalf("Hash(\"\") = %s", got)
	}
	if q := "query"; Hash(q) != Hash(strings.Clone(q)) || Hash(q) == Hash(q+"2") {
		t.Fatal("Hash is not deterministic or collides trivially")
	}
	leadingZero := false
	for i := 0; i < 10_000; i++ {
		s := "q" + strconv.Itoa(i)
		h := Hash(s)
		if want := fmt.Sprintf("%016x", xxhash.Sum64String(s)); h != want {
			t.Fatalf("Hash(%q) = %s, want %s", s, h, want)
		}
		if hb := HashBytes([]byte(s)); hb != h {
			t.Fatalf("HashBytes(%q) = %s, Hash = %s", s, hb, h)
		}
		leadingZero = leadingZero || h[0] == '0'
	}
	// About 1 in 16 hashes starts with a zero nibble; this proves padding.
	if !leadingZero {
		t.Fatal("no hash with a leading zero found: padding untested")
	}
}

func TestKeyBuilders(t *testing.T) {
	tests := []struct{ got, want string }{
		{Key("users", "42"), "users:42"},
		{VersionKey("users", "team9"), "{users:gv:team9}"},
		{LeaseKey("users:42"), "{users:42}:lease"},
		{EpochKey("users"), "{users:epoch}"},
		{IncarnationKey(EpochKey("users")), "{users:epoch}:incarnation"},
		{ValueKey("users", 0, 0, "42"), "users:0:0:42"},
		{ValueKey("users", 7, 9, "42"), "users:7:9:42"},
		{ValueKey("users", 3, 0, "1:0:x"), "users:3:0:1:0:x"},
		{ValueKey("u", ^uint64(0), ^uint64(0), "x"), "u:18446744073709551615:18446744073709551615:x"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// Derived keys start with a brace, so no valid user part can equal them.
	for _, k := range []string{VersionKey("users", "g"), LeaseKey("users:42"), EpochKey("users"), IncarnationKey(EpochKey("users"))} {
		if Validate(k) == nil {
			t.Errorf("derived key %q passes Validate: it could collide with a user key", k)
		}
	}
}

// hashTag is the part of key Redis Cluster hashes: the text between the
// first '{' and the next '}', when not empty; else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// A value key and its lease key hash alike: the lease key's tag is the
// whole value key.
func TestLeaseKeyHashTag(t *testing.T) {
	for i := 0; i < 5000; i++ {
		k := Key("ns"+strconv.Itoa(i%7), Hash(strconv.Itoa(i)))
		if i%3 == 0 {
			k = ValueKey("users", uint64(i), uint64(i), "id:"+strconv.Itoa(i)+":é")
		}
		if hashTag(LeaseKey(k)) != hashTag(k) {
			t.Fatalf("LeaseKey(%q) hashes %q, the value key %q", k, hashTag(LeaseKey(k)), hashTag(k))
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	const id = "user-12345" // 10 bytes
	if n := testing.AllocsPerRun(100, func() { _ = Validate(id) }); n != 0 {
		t.Errorf("Validate allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ValidateName("users") }); n != 0 {
		t.Errorf("ValidateName allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Validate("héllo-世界") }); n != 0 {
		t.Errorf("Validate(unicode) allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = ValueKey("users", 1796158081904102, 12, id) }); n > 1 {
		t.Errorf("ValueKey allocates %v times, want at most 1", n)
	}
}

func BenchmarkValidate(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if Validate("user-12345") != nil {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkHash(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Hash("select * from items where name like 'foo%'")
	}
}
