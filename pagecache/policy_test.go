//go:build linux

package pagecache

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
)

// Replacement policy simulations: the cache's s3fifo driven directly
// (with a map from key to entry, the way Cache uses it: victim, evicted,
// insert on a miss, hit on a hit) against an exact LRU.

// keyCache is a cache simulation.
type keyCache interface {
	// access looks key up, admitting it on a miss; it reports a hit.
	access(key uint64) bool
	resident(key uint64) bool
}

// s3sim drives s3fifo like Cache does.
type s3sim struct {
	p     *s3fifo
	entry map[uint64]int32
	keyOf []uint64
	free  []int32
}

func newS3Sim(capacity int) *s3sim {
	s := &s3sim{p: newS3FIFO(capacity), entry: make(map[uint64]int32, capacity), keyOf: make([]uint64, capacity)}
	for e := capacity - 1; e >= 0; e-- {
		s.free = append(s.free, int32(e))
	}
	return s
}

func (s *s3sim) access(key uint64) bool {
	if e, ok := s.entry[key]; ok {
		s.p.hit(e)
		return true
	}
	var e int32
	if n := len(s.free); n > 0 {
		e, s.free = s.free[n-1], s.free[:n-1]
	} else {
		v, small := s.p.victim()
		old := s.keyOf[v]
		delete(s.entry, old)
		s.p.evicted(old, small)
		e = v
	}
	s.p.insert(e, key)
	s.entry[key] = e
	s.keyOf[e] = key
	return false
}

func (s *s3sim) resident(key uint64) bool { _, ok := s.entry[key]; return ok }

// s3admitSim is s3sim with the cache's admission (Cache.admitLater): a
// miss while no entry is free is admitted only when its key was seen
// recently; otherwise the key is remembered and the miss goes around.
type s3admitSim struct{ *s3sim }

func (s s3admitSim) access(key uint64) bool {
	if e, ok := s.entry[key]; ok {
		s.p.hit(e)
		return true
	}
	if len(s.free) == 0 && !s.p.seenRecently(key) {
		s.p.remember(key)
		return false
	}
	return s.s3sim.access(key)
}

// lruSim is an exact LRU: a map into an intrusive doubly linked list.
type lruSim struct {
	capacity   int
	node       map[uint64]*lruNode
	head, tail *lruNode // head: most recent
}

type lruNode struct {
	key        uint64
	prev, next *lruNode
}

func newLRUSim(capacity int) *lruSim {
	return &lruSim{capacity: capacity, node: make(map[uint64]*lruNode, capacity)}
}

func (l *lruSim) unlink(n *lruNode) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
}

func (l *lruSim) pushFront(n *lruNode) {
	n.next = l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	if l.tail == nil {
		l.tail = n
	}
}

func (l *lruSim) access(key uint64) bool {
	if n, ok := l.node[key]; ok {
		l.unlink(n)
		l.pushFront(n)
		return true
	}
	if len(l.node) == l.capacity {
		v := l.tail
		l.unlink(v)
		delete(l.node, v.key)
	}
	n := &lruNode{key: key}
	l.node[key] = n
	l.pushFront(n)
	return false
}

func (l *lruSim) resident(key uint64) bool { _, ok := l.node[key]; return ok }

// zipf draws ranks 0..n-1 with P(k) ∝ 1/(k+1)^s (any s > 0, unlike
// math/rand's Zipf which needs s > 1).
type zipf struct {
	cdf []float64
	r   *rand.Rand
}

func newZipf(n int, s float64, seed uint64) *zipf {
	z := &zipf{cdf: make([]float64, n), r: rand.New(rand.NewPCG(seed, 3))}
	sum := 0.0
	for k := range n {
		sum += 1 / math.Pow(float64(k+1), s)
		z.cdf[k] = sum
	}
	for k := range z.cdf {
		z.cdf[k] /= sum
	}
	return z
}

func (z *zipf) next() uint64 {
	return uint64(sort.SearchFloat64s(z.cdf, z.r.Float64()))
}

// policyFigures are the results of one simulation run.
type policyFigures struct {
	zipfHit     float64 // hit ratio on Zipf(0.99) over 4x the cache
	scanHit     float64 // hit ratio with a 2x-cache scan mixed in
	hotEvicted  float64 // fraction of the resident hot set a pure 2x scan evicts
	hotResident int     // size of that resident hot set
	mixEvicted  float64 // hot-set fraction evicted with the scan mixed in, minus the same run without it
}

// simulatePolicy runs the workloads on caches built by mk.
func simulatePolicy(mk func(int) keyCache, capacity, accesses int, seed uint64) policyFigures {
	keys := 4 * capacity
	const scanBase = 1 << 40 // scan keys never collide with Zipf keys
	var fig policyFigures
	warm := func(c keyCache, z *zipf) {
		for range 10 * keys {
			c.access(z.next())
		}
	}
	// (a) Zipf alone.
	{
		c, z := mk(capacity), newZipf(keys, 0.99, seed)
		warm(c, z)
		hits := 0
		for range accesses {
			if c.access(z.next()) {
				hits++
			}
		}
		fig.zipfHit = float64(hits) / float64(accesses)
	}
	// (b) Zipf with a one-time 2x scan interleaved (one scan access per
	// Zipf access until the scan is done).
	hotSet := func(c keyCache) []uint64 {
		var hot []uint64
		for k := range uint64(capacity) {
			if c.resident(k) {
				hot = append(hot, k)
			}
		}
		return hot
	}
	evicted := func(c keyCache, hot []uint64) float64 {
		n := 0
		for _, k := range hot {
			if !c.resident(k) {
				n++
			}
		}
		return float64(n) / float64(max(len(hot), 1))
	}
	mixed := func(scan bool) (hit, ev float64) {
		c, z := mk(capacity), newZipf(keys, 0.99, seed)
		warm(c, z)
		hot := hotSet(c)
		hits, total, scanned := 0, 0, 0
		for i := range accesses {
			if c.access(z.next()) {
				hits++
			}
			total++
			if scan && scanned < 2*capacity {
				if c.access(scanBase + uint64(scanned)) {
					hits++
				}
				scanned++
				total++
			}
			if i == 2*capacity-1 {
				ev = evicted(c, hot)
			}
		}
		return float64(hits) / float64(total), ev
	}
	var withScan, without float64
	fig.scanHit, withScan = mixed(true)
	_, without = mixed(false)
	fig.mixEvicted = max(withScan-without, 0)
	// A pure scan right after warm-up: the hot set's fate is the scan's.
	{
		c, z := mk(capacity), newZipf(keys, 0.99, seed)
		warm(c, z)
		hot := hotSet(c)
		for i := range 2 * capacity {
			c.access(scanBase + uint64(i))
		}
		fig.hotEvicted, fig.hotResident = evicted(c, hot), len(hot)
	}
	return fig
}

const (
	policyCapacity = 1024
	policySeed     = 42
)

func policyAccesses() int {
	if soak() {
		return 2_000_000
	}
	return 200_000
}

// TestPolicyHitRatio compares S3-FIFO with an exact LRU: at least LRU's
// hit ratio on Zipf(0.99) over 4x the cache, and a one-time scan of twice
// the cache evicts at most 20% of the hot set.
func TestPolicyHitRatio(t *testing.T) {
	s3 := simulatePolicy(func(n int) keyCache { return newS3Sim(n) }, policyCapacity, policyAccesses(), policySeed)
	lru := simulatePolicy(func(n int) keyCache { return newLRUSim(n) }, policyCapacity, policyAccesses(), policySeed)
	t.Logf("cache %d entries, %d keys, seed %d, %d accesses", policyCapacity, 4*policyCapacity, policySeed, policyAccesses())
	t.Logf("(a) Zipf(0.99):            S3-FIFO hit %.4f, LRU hit %.4f (ratio %.3f)", s3.zipfHit, lru.zipfHit, s3.zipfHit/lru.zipfHit)
	t.Logf("(b) with a 2x scan mixed:  S3-FIFO hit %.4f, LRU hit %.4f (ratio %.3f)", s3.scanHit, lru.scanHit, s3.scanHit/lru.scanHit)
	t.Logf("    pure 2x scan evicts %.1f%% of the %d resident hot keys (LRU: %.1f%% of %d)",
		100*s3.hotEvicted, s3.hotResident, 100*lru.hotEvicted, lru.hotResident)
	t.Logf("    mixed scan evicts %.1f%% of the hot set beyond Zipf churn (LRU: %.1f%%)", 100*s3.mixEvicted, 100*lru.mixEvicted)
	if s3.zipfHit < lru.zipfHit {
		t.Errorf("S3-FIFO hit ratio %.4f below LRU %.4f on Zipf(0.99)", s3.zipfHit, lru.zipfHit)
	}
	if s3.hotEvicted > 0.20 {
		t.Errorf("a one-time scan evicted %.1f%% of the hot set, target <= 20%%", 100*s3.hotEvicted)
	}
	if s3.mixEvicted > 0.20 {
		t.Errorf("a mixed-in scan evicted %.1f%% of the hot set beyond churn, target <= 20%%", 100*s3.mixEvicted)
	}
	// The cache's admission of misses while it is full keeps first-time
	// keys out: it must not cost hits, and a scan must evict no more.
	ad := simulatePolicy(func(n int) keyCache { return s3admitSim{newS3Sim(n)} }, policyCapacity, policyAccesses(), policySeed)
	t.Logf("with admission: Zipf hit %.4f, with a scan %.4f; pure scan evicts %.1f%% of %d hot keys, mixed %.1f%%",
		ad.zipfHit, ad.scanHit, 100*ad.hotEvicted, ad.hotResident, 100*ad.mixEvicted)
	if ad.zipfHit < s3.zipfHit-0.005 || ad.scanHit < s3.scanHit-0.005 {
		t.Errorf("admission lowered the hit ratio: %.4f and %.4f, without it %.4f and %.4f", ad.zipfHit, ad.scanHit, s3.zipfHit, s3.scanHit)
	}
	if ad.hotEvicted > s3.hotEvicted || ad.mixEvicted > s3.mixEvicted {
		t.Errorf("admission let a scan evict more of the hot set: %.3f and %.3f, without it %.3f and %.3f",
			ad.hotEvicted, ad.mixEvicted, s3.hotEvicted, s3.mixEvicted)
	}
}

// TestPolicyBookkeeping checks the policy's queues against a model of the
// resident set through a random run with removals and reinsertions.
func TestPolicyBookkeeping(t *testing.T) {
	const n = 64
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 4))
	p := newS3FIFO(n)
	in := map[int32]bool{}
	keyOf := map[int32]uint64{}
	var free []int32
	for e := range int32(n) {
		free = append(free, e)
	}
	nextKey := uint64(0)
	for i := range 20000 {
		switch k := r.IntN(10); {
		case k < 4 && len(free) > 0:
			e := free[len(free)-1]
			free = free[:len(free)-1]
			key := nextKey % 200
			nextKey += 1 + uint64(r.IntN(3))
			p.insert(e, key)
			in[e], keyOf[e] = true, key
		case k < 6 && len(in) > 0:
			for e := range in {
				p.hit(e)
				break
			}
		case k < 8:
			e, small := p.victim()
			if e < 0 {
				if len(in) != 0 {
					t.Fatalf("step %d (seed %d): victim found nothing with %d resident", i, seed, len(in))
				}
				continue
			}
			if !in[e] {
				t.Fatalf("step %d (seed %d): victim %d not resident", i, seed, e)
			}
			if r.IntN(4) == 0 {
				p.reinsert(e) // kept (dirty, pinned)
				continue
			}
			p.evicted(keyOf[e], small)
			delete(in, e)
			free = append(free, e)
		case len(in) > 0:
			for e := range in {
				p.remove(e)
				delete(in, e)
				free = append(free, e)
				break
			}
		}
		if p.small.n+p.main.n != len(in) {
			t.Fatalf("step %d (seed %d): queues hold %d, %d resident", i, seed, p.small.n+p.main.n, len(in))
		}
	}
	var walked []int32
	for _, q := range []*queue{&p.small, &p.main} {
		for e := q.head; e >= 0; e = p.links[e].next {
			walked = append(walked, e)
		}
	}
	slices.Sort(walked)
	if len(slices.Compact(walked)) != len(in) {
		t.Fatalf("seed %d: queues list %d distinct entries, %d resident", seed, len(walked), len(in))
	}
	t.Logf("seed %d: 20000 policy operations, queues always equal to the resident set (%d at the end)", seed, len(in))
}

// TestS3FIFORules checks the policy's rules one by one on a 20-entry
// policy (small queue share: 2 entries).
func TestS3FIFORules(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *s3sim) string
	}{
		{"new keys enter the small queue", func(t *testing.T, s *s3sim) string {
			s.access(1)
			return queueOf(s, 1)
		}},
		{"a key hit twice in small moves to main when it reaches the tail", func(t *testing.T, s *s3sim) string {
			fill(s, 0, 20) // keys 0..19
			s.access(0)
			s.access(0)
			s.access(100) // evicts: small's tail is key 0, promoted
			return queueOf(s, 0)
		}},
		{"a key hit once in small is evicted into the ghost", func(t *testing.T, s *s3sim) string {
			fill(s, 0, 20)
			s.access(0)
			s.access(100)
			if s.resident(0) {
				return "resident"
			}
			s.access(0) // back from the ghost
			return queueOf(s, 0)
		}},
		{"a one-time scan passes through small and leaves main alone", func(t *testing.T, s *s3sim) string {
			fill(s, 0, 20)
			for range 3 { // make every key hot
				fill(s, 0, 20)
			}
			for k := uint64(1000); k < 1100; k++ {
				s.access(k)
			}
			n := 0
			for k := range uint64(20) {
				if s.resident(k) {
					n++
				}
			}
			if n >= 18 { // the scan may take the two main entries it meets first
				return "hot keys resident"
			}
			return fmt.Sprintf("only %d hot keys resident", n)
		}},
		{"main gives a hit key another round", func(t *testing.T, s *s3sim) string {
			fill(s, 0, 20)
			for k := range uint64(20) { // everything to main via two hits
				s.access(k)
				s.access(k)
			}
			for k := uint64(100); k < 120; k++ {
				s.access(k)
			}
			s.access(19) // resident in main if it got a second round
			return queueOf(s, 19)
		}},
	}
	want := []string{"small", "main", "main", "hot keys resident", "main"}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newS3Sim(20)
			if got := tt.run(t, s); got != want[i] {
				t.Fatalf("got %q, want %q", got, want[i])
			}
			t.Logf("%s: %s", tt.name, want[i])
		})
	}
}

func fill(s *s3sim, from, to uint64) {
	for k := from; k < to; k++ {
		s.access(k)
	}
}

func queueOf(s *s3sim, key uint64) string {
	e, ok := s.entry[key]
	if !ok {
		return "evicted"
	}
	switch s.p.links[e].in {
	case inSmall:
		return "small"
	case inMain:
		return "main"
	}
	return "none"
}

// TestGhost checks the ghost set: membership, removal, how long a key
// stays as others are added, and (under -race) that it needs no lock.
func TestGhost(t *testing.T) {
	const n = 1024
	g := newGhost(n)
	if len(g.table) != n {
		t.Fatalf("%d slots for %d entries, want %d", len(g.table), n, n)
	}
	steps := []struct {
		op   string
		key  uint64
		want bool
	}{
		{"find", 7, false},
		{"add", 7, true},
		{"find", 7, true},
		{"find", 8, false},
		{"remove", 7, true},
		{"find", 7, false},
		{"remove", 7, false},
		{"add", 7, true},
		{"add", 7, true}, // twice: still one key
		{"remove", 7, true},
		{"find", 7, false},
	}
	for i, s := range steps {
		var got bool
		switch s.op {
		case "find":
			got = g.find(s.key)
		case "remove":
			got = g.remove(s.key)
		case "add":
			g.add(s.key)
			got = g.find(s.key)
		}
		if got != s.want {
			t.Fatalf("step %d: %s(%d) = %v, want %v", i, s.op, s.key, got, s.want)
		}
	}
	// Retention: of the last n/8 keys added, about e^(-1/8) = 88 % are
	// still there; of those added over 8n additions ago, about none.
	const total = 10 * n
	for k := uint64(1000); k < 1000+total; k++ {
		g.add(k)
	}
	recent, old := 0, 0
	for k := uint64(1000 + total - n/8); k < 1000+total; k++ {
		if g.find(k) {
			recent++
		}
	}
	for k := uint64(1000); k < 1000+total-8*n; k++ {
		if g.find(k) {
			old++
		}
	}
	if recent < n/8*80/100 || old > 2*n/100 {
		t.Errorf("%d of the last %d keys kept (want ≥ 80 %%), %d of %d keys over 8n additions old (want ≤ %d)",
			recent, n/8, old, total-8*n, 2*n/100)
	}
	t.Logf("%d of the last %d keys kept; %d of %d older than 8n additions", recent, n/8, old, total-8*n)
	// No lock: concurrent additions, lookups and removals, which the race
	// detector checks (a key may lose its slot to another goroutine's
	// meanwhile, so their results are not).
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for k := range uint64(5000) {
				key := k*4 + uint64(w)
				g.add(key)
				g.find(key)
				g.remove(key)
			}
		})
	}
	wg.Wait()
}
