package pep

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLazyDeadline: the enforcement point's decision context behaves as
// context.WithTimeout's, whether Done is waited on before, after or never.
func TestLazyDeadline(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"deadline passes, never waited on", func(t *testing.T) {
			ctx, cancel := withLazyDeadline(context.Background(), 10*time.Millisecond)
			defer cancel()
			if err := ctx.Err(); err != nil {
				t.Fatalf("Err before the deadline = %v", err)
			}
			time.Sleep(20 * time.Millisecond)
			if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Err after the deadline = %v, want DeadlineExceeded", err)
			}
			if !closed(ctx.Done()) {
				t.Error("Done not closed after the deadline")
			}
		}},
		{"deadline passes while waited on", func(t *testing.T) {
			ctx, cancel := withLazyDeadline(context.Background(), 10*time.Millisecond)
			defer cancel()
			if !closed(ctx.Done()) || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Errorf("waited on: Err = %v", ctx.Err())
			}
		}},
		{"released before Done", func(t *testing.T) {
			ctx, cancel := withLazyDeadline(context.Background(), time.Hour)
			cancel()
			if err := ctx.Err(); !errors.Is(err, context.Canceled) {
				t.Errorf("Err after release = %v, want Canceled", err)
			}
			if !closed(ctx.Done()) {
				t.Error("Done after release not closed")
			}
		}},
		{"released while waited on", func(t *testing.T) {
			ctx, cancel := withLazyDeadline(context.Background(), time.Hour)
			done := ctx.Done()
			cancel()
			if !closed(done) || !errors.Is(ctx.Err(), context.Canceled) {
				t.Errorf("Err = %v", ctx.Err())
			}
		}},
		{"parent cancelled", func(t *testing.T) {
			parent, stop := context.WithCancel(context.Background())
			ctx, cancel := withLazyDeadline(parent, time.Hour)
			defer cancel()
			stop()
			if err := ctx.Err(); !errors.Is(err, context.Canceled) {
				t.Errorf("Err = %v, want Canceled", err)
			}
			if !closed(ctx.Done()) {
				t.Error("Done not closed with the parent")
			}
		}},
		{"earlier parent deadline and values", func(t *testing.T) {
			type key struct{}
			parent, stop := context.WithTimeout(context.WithValue(context.Background(), key{}, "v"), time.Minute)
			defer stop()
			ctx, cancel := withLazyDeadline(parent, time.Hour)
			defer cancel()
			pd, _ := parent.Deadline()
			if d, ok := ctx.Deadline(); !ok || !d.Equal(pd) {
				t.Errorf("Deadline = %v, %v; want the parent's %v", d, ok, pd)
			}
			if ctx.Value(key{}) != "v" {
				t.Error("parent's value lost")
			}
			child, stopChild := context.WithCancel(ctx)
			defer stopChild()
			cancel()
			if !closed(child.Done()) {
				t.Error("a child not cancelled with its lazy parent")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}
