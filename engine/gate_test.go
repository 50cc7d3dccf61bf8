//go:build linux

package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newGate() *gate { return &gate{done: make(chan struct{})} }

// TestGateClose: Close of a handle waits for exactly the calls inside its
// gate, counted in the shared word or, once calls overlapped, per stripe;
// a call after Close is refused.
func TestGateClose(t *testing.T) {
	tests := []struct {
		name   string
		inside int  // calls inside when Close starts
		spread bool // make two calls overlap first, so later ones count per stripe
	}{
		{"no calls", 0, false},
		{"no calls, spread", 0, true},
		{"one call", 1, false},
		{"three calls", 3, false},
		{"three calls, spread", 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate()
			if tt.spread {
				a, _ := g.enter()
				b, _ := g.enter()
				g.leave(b)
				g.leave(a)
				if g.spread.Load() == nil {
					t.Fatal("two overlapping calls did not spread the count")
				}
			}
			tickets := make([]int, tt.inside)
			for i := range tickets {
				var ok bool
				if tickets[i], ok = g.enter(); !ok {
					t.Fatal("enter refused on an open gate")
				}
				if tt.spread && tickets[i] == 0 {
					t.Fatal("a call after the spread counted in the shared word")
				}
			}
			closed := make(chan bool)
			go func() { closed <- g.close() }()
			for i, tk := range tickets {
				select {
				case <-closed:
					t.Fatalf("Close returned with %d calls inside", len(tickets)-i)
				case <-time.After(20 * time.Millisecond):
				}
				g.leave(tk)
			}
			select {
			case ok := <-closed:
				if !ok {
					t.Fatal("first close reported the gate already shut")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return after the last call left")
			}
			if _, ok := g.enter(); ok {
				t.Fatal("enter accepted after Close")
			}
			if g.close() {
				t.Fatal("second close did not report the gate already shut")
			}
		})
	}
}

// TestGateCloseRacingCalls: goroutines enter and leave in a loop while
// Close runs; once Close returns no call is inside, and none gets in
// after.
func TestGateCloseRacingCalls(t *testing.T) {
	for round := range 200 {
		g := newGate()
		var inside, lateEntries atomic.Int64
		var closedAt atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for i := 0; i < 1000; i++ {
					tk, ok := g.enter()
					if !ok {
						return
					}
					if closedAt.Load() {
						lateEntries.Add(1)
					}
					inside.Add(1)
					inside.Add(-1)
					g.leave(tk)
				}
			})
		}
		time.Sleep(time.Duration(round%5) * 10 * time.Microsecond)
		g.close()
		closedAt.Store(true)
		if n := inside.Load(); n != 0 {
			t.Fatalf("round %d: %d calls inside after Close returned", round, n)
		}
		wg.Wait()
		if n := lateEntries.Load(); n != 0 {
			t.Fatalf("round %d: %d calls entered after Close returned", round, n)
		}
	}
}
