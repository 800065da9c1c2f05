package invalidation

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

var testNode = NodeID{0: 0xde, 1: 0xad, 15: 0x01}

// validMessages holds one message or more of every kind, with keys that
// would break a ':'-separated or NUL-terminated format.
func validMessages() map[string]*Message {
	long := strings.Repeat("x", 300) // two-byte length prefix
	return map[string]*Message{
		"keys": {Node: testNode, Kind: KindKeys, Keyspace: "users",
			Keys: []string{"42", "a:b:c", "nul\x00byte", "clé/日本語", "", long, "\xff\xfe not utf-8"}},
		"keys-empty": {Node: testNode, Kind: KindKeys, Keyspace: "users"},
		"keyspace-odd": {Node: testNode, Kind: KindKeys, Keyspace: "ns:with\x00colon",
			Keys: []string{":"}},
		"bump": {Node: testNode, Kind: KindBump, Keyspace: "orders",
			Keys:     []string{"tenant:7", "g\x00", "", long},
			Versions: []uint64{0, 127, 128, math.MaxUint64}},
		"bump-empty": {Node: testNode, Kind: KindBump, Keyspace: "orders"},
		"flush":      {Node: testNode, Kind: KindFlush, Keyspace: "sessions"},
		"flushall":   {Node: testNode, Kind: KindFlushAll},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, m := range validMessages() {
		t.Run(name, func(t *testing.T) {
			prefix := []byte("prefix")
			b, err := Encode(append([]byte(nil), prefix...), m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("Encode did not append to dst: %q", b)
			}
			b = b[len(prefix):]
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(&got, m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, *m)
			}
			again, err := Encode(nil, &got)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encode differs (err %v):\n%x\n%x", err, again, b)
			}
		})
	}
}

func TestDecodeCopies(t *testing.T) {
	m := &Message{Node: testNode, Kind: KindKeys, Keyspace: "ks", Keys: []string{"abc", "def"}}
	b, err := Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'Z'
	}
	if !reflect.DeepEqual(&got, m) {
		t.Fatalf("decoded message changed with the buffer: %+v", got)
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, m := range map[string]*Message{
		"kind 0":              {Kind: 0, Keyspace: "ks"},
		"kind 5":              {Kind: 5, Keyspace: "ks"},
		"bump short versions": {Kind: KindBump, Keyspace: "ks", Keys: []string{"a", "b"}, Versions: []uint64{1}},
		"bump no versions":    {Kind: KindBump, Keyspace: "ks", Keys: []string{"a"}},
		"keys with versions":  {Kind: KindKeys, Keyspace: "ks", Keys: []string{"a"}, Versions: []uint64{1}},
		"flush with keys":     {Kind: KindFlush, Keyspace: "ks", Keys: []string{"a"}},
		"flushall with keys":  {Kind: KindFlushAll, Keys: []string{"a"}},
		"flushall keyspace":   {Kind: KindFlushAll, Keyspace: "ks"},
		"keys no keyspace":    {Kind: KindKeys, Keys: []string{"a"}},
		"flush no keyspace":   {Kind: KindFlush},
	} {
		dst := []byte("dst")
		out, err := Encode(dst, m)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Encode error %v, want ErrMalformed", name, err)
		}
		if string(out) != "dst" {
			t.Errorf("%s: Encode changed dst on error: %q", name, out)
		}
		if _, err := Split(m, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Split error %v, want ErrMalformed", name, err)
		}
	}
}

// decodeAll decodes payloads, checks they share m's header, and returns
// their items in order.
func decodeAll(t *testing.T, m *Message, payloads [][]byte) ([]string, []uint64) {
	t.Helper()
	var keys []string
	var versions []uint64
	for i, p := range payloads {
		got, err := Decode(p)
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		if got.Node != m.Node || got.Kind != m.Kind || got.Keyspace != m.Keyspace {
			t.Fatalf("payload %d header %v %v %q, want %v %v %q",
				i, got.Node, got.Kind, got.Keyspace, m.Node, m.Kind, m.Keyspace)
		}
		if len(got.Keys) == 0 && len(m.Keys) > 0 {
			t.Fatalf("payload %d is empty", i)
		}
		keys = append(keys, got.Keys...)
		versions = append(versions, got.Versions...)
	}
	return keys, versions
}

func TestSplit(t *testing.T) {
	keys := make([]string, 500)
	versions := make([]uint64, len(keys))
	for i := range keys {
		keys[i] = strings.Repeat(string(rune('a'+i%26)), i%40) + ":" + string(rune(i))
		versions[i] = uint64(i) << (i % 60)
	}
	for _, kind := range []Kind{KindKeys, KindBump} {
		m := &Message{Node: testNode, Kind: kind, Keyspace: "split", Keys: keys}
		if kind == KindBump {
			m.Versions = versions
		}
		for _, limit := range []int{80, 200, 1000, 1 << 20} {
			payloads, err := Split(m, limit)
			if err != nil {
				t.Fatalf("%v limit %d: %v", kind, limit, err)
			}
			for i, p := range payloads {
				if len(p) > limit {
					t.Fatalf("%v limit %d: payload %d is %d bytes", kind, limit, i, len(p))
				}
			}
			gotKeys, gotVersions := decodeAll(t, m, payloads)
			if !reflect.DeepEqual(gotKeys, keys) {
				t.Fatalf("%v limit %d: keys differ after split", kind, limit)
			}
			if kind == KindBump && !reflect.DeepEqual(gotVersions, versions) {
				t.Fatalf("%v limit %d: versions differ after split", kind, limit)
			}
			if kind == KindKeys && gotVersions != nil {
				t.Fatalf("%v limit %d: versions on a keys message", kind, limit)
			}
			if limit < 1000 && len(payloads) < 2 {
				t.Fatalf("%v limit %d: %d payloads, expected a split", kind, limit, len(payloads))
			}
			if limit == 1<<20 && len(payloads) != 1 {
				t.Fatalf("%v limit %d: %d payloads, want 1", kind, limit, len(payloads))
			}
		}
	}
}

func TestSplitDefaultLimit(t *testing.T) {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = strings.Repeat("k", 30) + hex.EncodeToString([]byte{byte(i >> 8), byte(i)})
	}
	m := &Message{Node: testNode, Kind: KindKeys, Keyspace: "big", Keys: keys}
	payloads, err := Split(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(payloads) < 5 {
		t.Fatalf("%d payloads for ~350KiB of keys", len(payloads))
	}
	for i, p := range payloads {
		if len(p) > MaxMessageSize {
			t.Fatalf("payload %d is %d bytes > MaxMessageSize", i, len(p))
		}
		// Greedy packing: the next item would not have fit.
		if i < len(payloads)-1 && len(p)+1+len(keys[0]) <= MaxMessageSize-1 {
			t.Fatalf("payload %d is only %d bytes", i, len(p))
		}
	}
	if got, _ := decodeAll(t, m, payloads); !reflect.DeepEqual(got, keys) {
		t.Fatal("keys differ after split")
	}
}

func TestSplitHugeItemAlone(t *testing.T) {
	huge := strings.Repeat("H", 1000)
	m := &Message{Node: testNode, Kind: KindBump, Keyspace: "ks",
		Keys:     []string{"a", huge, "b", "c"},
		Versions: []uint64{1, 2, 3, 4}}
	payloads, err := Split(m, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(payloads) != 3 {
		t.Fatalf("%d payloads, want 3 ([a] [huge] [b c])", len(payloads))
	}
	mid, err := Decode(payloads[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(mid.Keys) != 1 || mid.Keys[0] != huge || mid.Versions[0] != 2 {
		t.Fatalf("huge item not alone in its payload: %d keys", len(mid.Keys))
	}
	keys, versions := decodeAll(t, m, payloads)
	if !reflect.DeepEqual(keys, m.Keys) || !reflect.DeepEqual(versions, m.Versions) {
		t.Fatalf("items differ after split: %v %v", len(keys), versions)
	}
}

func TestSplitNoItems(t *testing.T) {
	for _, name := range []string{"flush", "flushall", "keys-empty", "bump-empty"} {
		m := validMessages()[name]
		payloads, err := Split(m, 1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := Encode(nil, m)
		if len(payloads) != 1 || !bytes.Equal(payloads[0], want) {
			t.Fatalf("%s: got %d payloads %x, want one %x", name, len(payloads), payloads, want)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	for name, m := range validMessages() {
		b, err := Encode(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(b); i++ {
			if _, err := Decode(b[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s truncated to %d of %d bytes: error %v, want ErrMalformed", name, i, len(b), err)
			}
		}
	}
}

// raw builds a payload with a valid header followed by rest.
func raw(kind Kind, rest ...byte) []byte {
	b := append([]byte{magic, formatVersion}, testNode[:]...)
	return append(append(b, byte(kind)), rest...)
}

func TestDecodeRejects(t *testing.T) {
	valid, err := Encode(nil, validMessages()["keys"])
	if err != nil {
		t.Fatal(err)
	}
	foreign := append([]byte("{\"json\":1}"), valid[1:]...)
	future := append([]byte(nil), valid...)
	future[1] = 2
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	ks := append(uv(2), "ks"...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, c := range []struct {
		name    string
		b       []byte
		want    error
		mention string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"foreign", foreign, ErrForeign, "0x7b"},
		{"foreign zero", []byte{0}, ErrForeign, ""},
		{"future version", future, ErrVersion, "version 2"},
		{"future version short", []byte{magic, 9}, ErrVersion, ""},
		{"version zero", []byte{magic, 0, 1, 2}, ErrVersion, ""},
		{"kind 0", raw(0, cat(ks, uv(0))...), ErrMalformed, "kind 0"},
		{"kind 5", raw(5, cat(ks, uv(0))...), ErrMalformed, "kind 5"},
		{"kind 255", raw(255, cat(ks, uv(0))...), ErrMalformed, "kind 255"},
		{"trailing byte", append(append([]byte(nil), valid...), 0), ErrMalformed, "trailing"},
		{"trailing garbage", append(append([]byte(nil), valid...), "garbage"...), ErrMalformed, "trailing"},
		{"giant count", raw(KindKeys, cat(ks, uv(1<<60), uv(1), []byte("a"))...), ErrMalformed, "item count"},
		{"giant bump count", raw(KindBump, cat(ks, uv(3), uv(1), []byte("a"), uv(1), uv(0))...), ErrMalformed, "item count"},
		{"giant keyspace", raw(KindKeys, cat(uv(1<<62), []byte("ks"), uv(0))...), ErrMalformed, "keyspace length"},
		{"giant item", raw(KindKeys, cat(ks, uv(1), uv(math.MaxUint64), []byte("a"))...), ErrMalformed, "item 0 length"},
		{"varint overflow", raw(KindKeys, bytes.Repeat([]byte{0xff}, 11)...), ErrMalformed, "overflows"},
		{"varint overflow 10th byte", raw(KindKeys, cat(bytes.Repeat([]byte{0xff}, 9), []byte{2})...), ErrMalformed, "overflows"},
		{"non-minimal length", raw(KindKeys, cat([]byte{0x82, 0x00}, []byte("ks"), uv(0))...), ErrMalformed, "shortest"},
		{"non-minimal version", raw(KindBump, cat(ks, uv(1), uv(1), []byte("g"), []byte{0x80, 0x80, 0x00})...), ErrMalformed, "shortest"},
		{"bump missing version", raw(KindBump, cat(ks, uv(1), uv(2), []byte("gg"))...), ErrMalformed, "version of item 0"},
		{"flush with items", raw(KindFlush, cat(ks, uv(1), uv(1), []byte("a"))...), ErrMalformed, "flush with 1 items"},
		{"flushall with items", raw(KindFlushAll, cat(uv(0), uv(1), uv(1), []byte("a"))...), ErrMalformed, "flushall with 1 items"},
		{"flushall with keyspace", raw(KindFlushAll, cat(ks, uv(0))...), ErrMalformed, "keyspace"},
		{"keys without keyspace", raw(KindKeys, cat(uv(0), uv(1), uv(1), []byte("a"))...), ErrMalformed, "empty keyspace"},
	} {
		_, err := Decode(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
			continue
		}
		for _, other := range []error{ErrMalformed, ErrForeign, ErrVersion} {
			if other != c.want && errors.Is(err, other) {
				t.Errorf("%s: error %v also matches %v", c.name, err, other)
			}
		}
		if !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.mention)
		}
	}
}

func TestDecodeGiantCountDoesNotAllocate(t *testing.T) {
	ks := append(binary.AppendUvarint(nil, 2), "ks"...)
	for _, count := range []uint64{1 << 25, 1 << 40, 1 << 60, math.MaxUint64} {
		b := raw(KindBump, append(binary.AppendUvarint(ks[:len(ks):len(ks)], count), 1, 'a', 0)...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Decode(b)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("count %d: error %v, want ErrMalformed", count, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
			t.Fatalf("count %d: Decode allocated %d bytes", count, d)
		}
	}
}

func TestNewNodeIDUnique(t *testing.T) {
	const n = 10000
	seen := make(map[NodeID]bool, n)
	for i := 0; i < n; i++ {
		id, err := NewNodeID()
		if err != nil {
			t.Fatal(err)
		}
		if id == (NodeID{}) {
			t.Fatal("zero node id")
		}
		if seen[id] {
			t.Fatalf("duplicate node id %v after %d ids", id, i)
		}
		seen[id] = true
	}
}

func TestNodeIDString(t *testing.T) {
	want := "dead0000000000000000000000000001"
	if got := testNode.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindKeys: "keys", KindBump: "bump", KindFlush: "flush", KindFlushAll: "flushall",
		0: "Kind(0)", 9: "Kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}
