package main

import (
	"bytes"
	"os"
	"testing"
)

// TestHelpIsCurrent fails when tiered/stats.go's field comments and
// help_gen.go differ: run `go generate ./internal/metricspec`.
func TestHelpIsCurrent(t *testing.T) {
	want, err := generate("../../../tiered/stats.go")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../help_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("internal/metricspec/help_gen.go is out of date with tiered/stats.go: run go generate ./internal/metricspec")
	}
}

func TestFieldDocs(t *testing.T) {
	docs, err := fieldDocs("../../../tiered/stats.go")
	if err != nil {
		t.Fatal(err)
	}
	if got := docs["Stats.LocalHits"]; got != "Gets answered by the local tier" {
		t.Fatalf("Stats.LocalHits: %q", got)
	}
	if got := docs["ClientStats.BreakerState"]; got != `"closed", "open" or "half-open"` {
		t.Fatalf("ClientStats.BreakerState: %q", got)
	}
	if _, err := fieldDocs("main.go"); err == nil {
		t.Fatal("a file without Stats: no error")
	}
}
