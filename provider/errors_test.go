package provider

import (
	"errors"
	"fmt"
	"testing"
)

// Errors keep their code through wrapping and joining, match the
// sentinels by code alone, and flatten into what the adapter sends.
func TestErrorCodesSurviveWrappingAndJoining(t *testing.T) {
	full := Errorf(CodePoolFull, "haproxy-a", "backend app: all 64 slots taken: %w", errors.New("no free slot"))
	busy := &Error{Code: CodeBusy, Instance: "haproxy-b", Message: "3 sessions"}
	err := fmt.Errorf("register: %w", errors.Join(full, busy, errors.New("plain")))
	if !errors.Is(err, ErrPoolFull) || !errors.Is(err, ErrTargetBusy) {
		t.Fatalf("errors.Is by code failed: %v", err)
	}
	if errors.Is(err, ErrConflict) {
		t.Fatalf("errors.Is matched a code that is not there: %v", err)
	}
	if CodeOf(err) != CodePoolFull {
		t.Fatalf("CodeOf = %s, want the first code, PoolFull", CodeOf(err))
	}
	if CodeOf(errors.New("x")) != CodeInternal || CodeOf(nil) != "" {
		t.Fatal("CodeOf of a plain error or nil")
	}
	flat := Errors(err)
	if len(flat) != 3 || flat[0].Code != CodePoolFull || flat[0].Instance != "haproxy-a" || flat[1].Code != CodeBusy || flat[2].Code != CodeInternal {
		t.Fatalf("Errors() = %+v", flat)
	}
	if got := full.Error(); got != "haproxy-a: backend app: all 64 slots taken: no free slot" {
		t.Fatalf("Error() = %q", got)
	}
	if errors.Unwrap(full) == nil {
		t.Fatal("Errorf with %w lost the cause")
	}
}
