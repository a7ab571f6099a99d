package h1server

import (
	"context"
	"testing"
)

func TestConnContextAbortHook(t *testing.T) {
	cc := newConnContext(context.Background())
	var ran []string
	first := cc.SetAbort(func() { ran = append(ran, "first") })
	cc.ClearAbort(first)
	second := cc.SetAbort(func() { ran = append(ran, "second") })
	cc.ClearAbort(first) // stale: must not clear the second hook
	cc.end()
	if len(ran) != 1 || ran[0] != "second" {
		t.Fatalf("hooks run: %v, want [second]", ran)
	}
	if cc.Err() == nil {
		t.Fatal("context not ended")
	}
	cc.ClearAbort(second)
	cc.SetAbort(func() { ran = append(ran, "late") })
	if len(ran) != 2 || ran[1] != "late" {
		t.Fatalf("a hook set after the end did not run at once: %v", ran)
	}
	cc.end() // ending twice runs nothing again
	if len(ran) != 2 {
		t.Fatalf("hooks run: %v", ran)
	}
}
