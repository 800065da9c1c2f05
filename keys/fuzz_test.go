package keys

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// validRef is a slow, obviously correct statement of the Validate rules that
// the fast byte loop must agree with.
func validRef(s string) bool {
	if s == "" || len(s) > MaxLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '{' || r == '}' {
			return false
		}
	}
	return true
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"user42", "a:b", "é", "a\x00", "{x}", "\xff", strings.Repeat("z", MaxLen)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Validate(s)
		if ok := validRef(s); ok != (err == nil) {
			t.Fatalf("Validate(%q) = %v, reference says valid=%v", s, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Validate(%q) = %v, not ErrInvalidKey", s, err)
		}
		nameErr := ValidateName(s)
		if wantOK := err == nil && !strings.Contains(s, Sep); wantOK != (nameErr == nil) {
			t.Fatalf("ValidateName(%q) = %v, Validate = %v", s, nameErr, err)
		}
		if err == nil && hashTag(LeaseKey(s)) != hashTag(s) {
			t.Fatalf("LeaseKey(%q) hashes unlike %q", s, s)
		}
	})
}

// parseValueKey splits a ValueKey back into its fields: the reading that
// shows the layout is unambiguous.
func parseValueKey(key string) (ns string, epoch, version uint64, id string, ok bool) {
	parts := strings.SplitN(key, Sep, 4)
	if len(parts) != 4 {
		return "", 0, 0, "", false
	}
	e, err1 := strconv.ParseUint(parts[1], 10, 64)
	v, err2 := strconv.ParseUint(parts[2], 10, 64)
	return parts[0], e, v, parts[3], err1 == nil && err2 == nil
}

// FuzzValueKey: distinct (epoch, version, id) give distinct keys, for every
// id Validate accepts, and neither collides with a key the library derives.
func FuzzValueKey(f *testing.F) {
	f.Add("users", uint64(3), uint64(0), "x", uint64(0), uint64(0), "3:0:x")
	f.Add("users", uint64(1), uint64(2), "a:b", uint64(1), uint64(2), "a:b:")
	f.Add("u", uint64(0), uint64(0), "e1:x", uint64(1), uint64(0), "x")
	f.Fuzz(func(t *testing.T, ns string, e1, v1 uint64, id1 string, e2, v2 uint64, id2 string) {
		if ValidateName(ns) != nil || Validate(id1) != nil || Validate(id2) != nil {
			return
		}
		k1, k2 := ValueKey(ns, e1, v1, id1), ValueKey(ns, e2, v2, id2)
		if same := e1 == e2 && v1 == v2 && id1 == id2; same != (k1 == k2) {
			t.Fatalf("ValueKey(%d, %d, %q) = %q and ValueKey(%d, %d, %q) = %q", e1, v1, id1, k1, e2, v2, id2, k2)
		}
		if gotNS, e, v, id, ok := parseValueKey(k1); !ok || gotNS != ns || e != e1 || v != v1 || id != id1 {
			t.Fatalf("%q reads back as (%q, %d, %d, %q, %v)", k1, gotNS, e, v, id, ok)
		}
	})
}
