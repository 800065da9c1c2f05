package remote

import (
	"strconv"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/keys"
)

func TestCRC16(t *testing.T) {
	// The check value of CRC16/XMODEM, quoted by the Redis Cluster spec.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	// Spot-check the generated table against the one in Redis' crc16.c.
	for i, want := range map[int]uint16{0: 0x0000, 1: 0x1021, 8: 0x8108, 9: 0x9129, 16: 0x1231, 79: 0xb92b} {
		if crc16Table[i] != want {
			t.Errorf("crc16Table[%d] = %#04x, want %#04x", i, crc16Table[i], want)
		}
	}
}

func TestSlot(t *testing.T) {
	// Values from the Redis documentation (CLUSTER KEYSLOT).
	known := map[string]uint16{
		"123456789":         0x31C3 % SlotCount, // 12739
		"somekey":           11058,
		"foo{hash_tag}":     2515,
		"bar{hash_tag}":     2515,
		"{user1}.following": 8106,
		"":                  0,
	}
	for k, want := range known {
		if got := Slot(k); got != want {
			t.Errorf("Slot(%q) = %d, want %d", k, got, want)
		}
	}
	same := [][2]string{
		{"{user1000}.following", "{user1000}.followers"},
		{"{user1000}.following", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"}, // tag is "{bar"
		{"foo{bar}{zap}", "bar"},  // first tag only
		{"foo{bar", "foo{bar"},    // no closing brace: whole key
		{"a}b{c}", "c"},           // '}' before '{' is ignored
		{"{ns:gv:g}", "ns:gv:g"},  // whole version key is the tag
	}
	for _, p := range same {
		if Slot(p[0]) != Slot(p[1]) {
			t.Errorf("Slot(%q) = %d, Slot(%q) = %d, want equal", p[0], Slot(p[0]), p[1], Slot(p[1]))
		}
	}
	// Whole-key hashing when the tag is empty.
	if Slot("foo{}{bar}") != crc16("foo{}{bar}")%SlotCount || Slot("foo{}{bar}") == Slot("bar") {
		t.Error("foo{}{bar} must hash the whole key")
	}
}

func TestLeaseKeySameSlot(t *testing.T) {
	for i := 0; i < 5000; i++ {
		k := keys.Key("ns"+strconv.Itoa(i%7), keys.Hash(strconv.Itoa(i)))
		if i%3 == 0 {
			k = keys.ValueKey("users", uint64(i), uint64(i), "id:"+strconv.Itoa(i)+":é")
		}
		if Slot(keys.LeaseKey(k)) != Slot(k) {
			t.Fatalf("Slot(LeaseKey(%q)) = %d, Slot = %d", k, Slot(keys.LeaseKey(k)), Slot(k))
		}
	}
}

func TestSlotDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Slot("{users:42}:lease") }); n != 0 {
		t.Errorf("Slot allocates %v times, want 0", n)
	}
}

func FuzzSlot(f *testing.F) {
	for _, s := range []string{"", "123456789", "{a}b", "foo{}{bar}", "foo{{bar}}zap", "{", "}{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Slot(s)
		if got >= SlotCount {
			t.Fatalf("Slot(%q) = %d, out of range", s, got)
		}
		// The cluster spec: a key with a non-empty tag (between its first
		// "{" and the first "}" after it) is hashed by the tag alone.
		if open := strings.IndexByte(s, '{'); open >= 0 {
			if n := strings.IndexByte(s[open+1:], '}'); n > 0 {
				if tag := s[open+1 : open+1+n]; Slot(tag) != got {
					t.Fatalf("Slot(%q) = %d, Slot of its tag %q = %d", s, got, tag, Slot(tag))
				}
			}
		}
	})
}

func BenchmarkSlot(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Slot("{users:user-12345}:lease")
	}
}
