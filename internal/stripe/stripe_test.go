package stripe

import (
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestHintRange: Hint stays in [0, Stripes) from any goroutine and any
// call depth, and gives the same value to repeated calls from one place.
func TestHintRange(t *testing.T) {
	var depth func(n int) int
	depth = func(n int) int {
		if n == 0 {
			return Hint()
		}
		return depth(n - 1)
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for n := range 50 {
				h := depth(n + g)
				if h < 0 || h >= Stripes {
					t.Errorf("Hint() = %d, want [0, %d)", h, Stripes)
				}
				if again := depth(n + g); again != h {
					t.Errorf("Hint() from one place: %d then %d", h, again)
				}
			}
		})
	}
	wg.Wait()
}

// TestHintSpreads: goroutines alive at the same time get many different
// stripes (a hash that sent all of them to one would pass TestHintRange).
func TestHintSpreads(t *testing.T) {
	const goroutines = 256
	seen := make([]atomic.Int32, Stripes)
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			seen[Hint()].Add(1)
			<-release // keep every stack alive until all have looked
		})
	}
	for {
		total := int32(0)
		for i := range seen {
			total += seen[i].Load()
		}
		if total == goroutines {
			break
		}
	}
	close(release)
	wg.Wait()
	used, most := 0, int32(0)
	for i := range seen {
		if n := seen[i].Load(); n > 0 {
			used++
			most = max(most, n)
		}
	}
	// 256 goroutines over 32 stripes: expect every stripe used and about
	// 8 in each; a poor hash crowds them.
	if used < Stripes*3/4 || most > goroutines/4 {
		t.Errorf("%d goroutines used %d of %d stripes, at most %d in one", goroutines, used, Stripes, most)
	}
	t.Logf("%d goroutines: %d of %d stripes used, at most %d in one", goroutines, used, Stripes, most)
}

// TestHintPairs: two goroutines alive at once, as a benchmark's
// RunParallel starts them on two CPUs, share a stripe about one time in
// Stripes. Goroutine stacks start at 2 KiB and are often adjacent, so a
// hint that ignored the 2 KiB bit of the stack address would put such a
// pair on one stripe about half the time.
func TestHintPairs(t *testing.T) {
	const trials = 400
	same := 0
	for range trials {
		var wg sync.WaitGroup
		var hints [2]int
		release := make(chan struct{})
		var ready sync.WaitGroup
		for i := range hints {
			ready.Add(1)
			wg.Go(func() {
				hints[i] = Hint()
				ready.Done()
				<-release // both stacks alive while the other looks
			})
		}
		ready.Wait()
		close(release)
		wg.Wait()
		if hints[0] == hints[1] {
			same++
		}
	}
	// Expected trials/Stripes (12); allow four times that.
	if same > 4*trials/Stripes {
		t.Errorf("%d of %d pairs of goroutines got the same stripe, want about %d", same, trials, trials/Stripes)
	}
	t.Logf("%d of %d pairs of goroutines shared a stripe", same, trials)
}

// TestShardedLayout: copies are lineSize or more apart, so two never
// share a cache line, and At reduces its index modulo Stripes.
func TestShardedLayout(t *testing.T) {
	var s Sharded[atomic.Uint64]
	for i := 1; i < Stripes; i++ {
		gap := uintptr(unsafe.Pointer(s.At(i))) - uintptr(unsafe.Pointer(s.At(i-1)))
		if gap < lineSize {
			t.Fatalf("copies %d and %d are %d bytes apart, want ≥ %d", i-1, i, gap, lineSize)
		}
	}
	if s.At(Stripes+3) != s.At(3) || s.At(-1) != s.At(Stripes-1) {
		t.Fatal("At does not reduce its index modulo Stripes")
	}
}

// TestShardedSum: concurrent adds through every goroutine's own stripe
// sum exactly (Sum, and Each that it is built on).
func TestShardedSum(t *testing.T) {
	var s Sharded[atomic.Int64]
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10000 {
				s.At(Hint()).Add(3)
			}
		})
	}
	wg.Wait()
	if got := Sum(&s); got != 16*10000*3 {
		t.Fatalf("Sum = %d, want %d", got, 16*10000*3)
	}
	visited := 0
	s.Each(func(*atomic.Int64) { visited++ })
	if visited != Stripes {
		t.Fatalf("Each visited %d copies, want %d", visited, Stripes)
	}
}

func BenchmarkHint(b *testing.B) {
	s := 0
	for b.Loop() {
		s += Hint()
	}
	_ = s
}

// BenchmarkAdd: one counter added to from every CPU, shared or striped.
func BenchmarkAdd(b *testing.B) {
	b.Run("shared", func(b *testing.B) {
		var n atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Add(1)
			}
		})
	})
	b.Run("striped", func(b *testing.B) {
		var s Sharded[atomic.Uint64]
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.At(Hint()).Add(1)
			}
		})
	})
}

// TestCounter: concurrent adds from many goroutines all count.
func TestCounter(t *testing.T) {
	var c Counter
	var wg sync.WaitGroup
	const goroutines, adds = 64, 1000
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range adds {
				c.Add(uint64(g%3 + 1))
			}
		}()
	}
	wg.Wait()
	want := uint64(0)
	for g := range goroutines {
		want += uint64(g%3+1) * adds
	}
	if got := c.Load(); got != want {
		t.Fatalf("Load = %d, want %d", got, want)
	}
}
