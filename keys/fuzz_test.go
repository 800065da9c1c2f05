package keys

import (
	"errors"
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
