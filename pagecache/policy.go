//go:build linux

package pagecache

import "sync/atomic"

// s3fifo is the replacement policy: S3-FIFO (Yang et al., SOSP 2023),
// which is scan-resistant with FIFO queues only.
//
// Resident entries sit in a small queue S (about a tenth of the capacity)
// or a main queue M. New entries enter S, unless their key is in the ghost
// queue G (recently evicted from S, or missed while the cache was full and
// kept out: see remember), in which case they enter M directly.
// Eviction takes S's tail when S is over its share: an entry hit more than
// once while in S moves to M, otherwise it is evicted and its key goes to
// G. Otherwise M's tail is taken: an entry hit since it was last examined
// is reinserted at M's head with its count decremented, else evicted. A
// one-time scan thus passes through S without displacing M.
//
// Entries are frame indices; the queues are intrusive doubly linked lists
// over per-frame links. Hits touch only the entry's atomic frequency, so
// the hit path takes no lock. Everything else is guarded by the owner's
// lock (Cache.mu).
type s3fifo struct {
	links   []link
	freq    []atomic.Uint32 // hits since last examined, capped at maxFreq
	small   queue
	main    queue
	smallTo int // S's target share
	ghost   ghost
}

const maxFreq = 3

type link struct {
	prev, next int32
	in         uint8 // which queue holds the entry (inNone, inSmall, inMain)
}

const (
	inNone uint8 = iota
	inSmall
	inMain
)

// queue is a FIFO: entries are pushed at head and taken from tail.
type queue struct {
	head, tail int32 // -1 when empty
	n          int
	id         uint8
}

func newS3FIFO(n int) *s3fifo {
	p := &s3fifo{
		links:   make([]link, n),
		freq:    make([]atomic.Uint32, n),
		small:   queue{head: -1, tail: -1, id: inSmall},
		main:    queue{head: -1, tail: -1, id: inMain},
		smallTo: max(n/10, 1),
		ghost:   newGhost(n),
	}
	for i := range p.links {
		p.links[i] = link{prev: -1, next: -1}
	}
	return p
}

// hit records an access to a resident entry. Safe without any lock.
func (p *s3fifo) hit(e int32) {
	f := &p.freq[e]
	if v := f.Load(); v < maxFreq {
		f.Store(v + 1)
	}
}

// insert adds a new resident entry with the given key.
func (p *s3fifo) insert(e int32, key uint64) {
	p.freq[e].Store(0)
	if p.ghost.remove(key) {
		p.push(&p.main, e)
		return
	}
	p.push(&p.small, e)
}

// remove takes e out of the policy (the page left the cache for a reason
// other than eviction: truncation, invalidation).
func (p *s3fifo) remove(e int32) {
	switch p.links[e].in {
	case inSmall:
		p.unlink(&p.small, e)
	case inMain:
		p.unlink(&p.main, e)
	}
}

// reinsert returns an entry taken by victim but not evicted (pinned,
// dirty, busy) to M's head.
func (p *s3fifo) reinsert(e int32) {
	p.remove(e)
	p.push(&p.main, e)
}

// victim chooses the next entry to evict and takes it out of the queues;
// the caller reports the eviction with evicted (adding the key to the
// ghost queue when it came from S) or gives it back with reinsert. It
// returns -1 when nothing is resident. Each call examines at most
// maxExamine entries before it gives up and returns the best candidate.
func (p *s3fifo) victim() (e int32, fromSmall bool) {
	for examined := 0; examined < 4*(p.small.n+p.main.n)+1; examined++ {
		if p.small.n > 0 && (p.small.n >= p.smallTo || p.main.n == 0) {
			e := p.small.tail
			p.unlink(&p.small, e)
			if p.freq[e].Load() > 1 {
				p.freq[e].Store(0)
				p.push(&p.main, e)
				continue
			}
			return e, true
		}
		if p.main.n == 0 {
			return -1, false
		}
		e := p.main.tail
		p.unlink(&p.main, e)
		if f := p.freq[e].Load(); f > 0 {
			p.freq[e].Store(f - 1)
			p.push(&p.main, e)
			continue
		}
		return e, false
	}
	// Every entry keeps being hit: take M's tail regardless.
	if e := p.main.tail; e >= 0 {
		p.unlink(&p.main, e)
		return e, false
	}
	return -1, false
}

// seenRecently reports whether key is in the ghost queue: evicted from S
// recently, or missed recently while the cache was full (remember).
func (p *s3fifo) seenRecently(key uint64) bool { return p.ghost.find(key) != nil }

// remember records the key of a miss served around the cache in the
// ghost queue, so that a second miss while it is there admits the entry
// (into M, as insert does for ghost keys). See Cache.admitLater.
func (p *s3fifo) remember(key uint64) { p.ghost.add(key) }

// evicted records that e, taken by victim, left the cache.
func (p *s3fifo) evicted(key uint64, fromSmall bool) {
	if fromSmall {
		p.ghost.add(key)
	}
}

func (p *s3fifo) push(q *queue, e int32) {
	l := &p.links[e]
	l.prev, l.next, l.in = -1, q.head, q.id
	if q.head >= 0 {
		p.links[q.head].prev = e
	}
	q.head = e
	if q.tail < 0 {
		q.tail = e
	}
	q.n++
}

func (p *s3fifo) unlink(q *queue, e int32) {
	l := &p.links[e]
	if l.prev >= 0 {
		p.links[l.prev].next = l.next
	} else {
		q.head = l.next
	}
	if l.next >= 0 {
		p.links[l.next].prev = l.prev
	} else {
		q.tail = l.prev
	}
	l.prev, l.next, l.in = -1, -1, inNone
	q.n--
}

// ghost is a bounded FIFO set of keys of entries recently evicted from S
// or kept out of a full cache (remember).
// It never allocates after construction: keys live in a ring and an
// open-addressed table of counts.
type ghost struct {
	ring  []uint64
	pos   int
	count int
	table []ghostSlot // power-of-two sized, linear probing
	mask  uint64
	tombs int // tombstones in table; the table is rebuilt when they pile up
}

type ghostSlot struct {
	key uint64
	n   int32 // occurrences in ring; 0 = empty slot (tombstones are n == -1)
}

func newGhost(n int) ghost {
	size := 1
	for size < 2*n+2 {
		size <<= 1
	}
	return ghost{ring: make([]uint64, n), table: make([]ghostSlot, size), mask: uint64(size - 1)}
}

func (g *ghost) find(key uint64) *ghostSlot {
	for i, probes := mix(key)&g.mask, 0; probes <= int(g.mask); i, probes = (i+1)&g.mask, probes+1 {
		s := &g.table[i]
		if s.n == 0 {
			return nil
		}
		if s.n > 0 && s.key == key {
			return s
		}
	}
	return nil
}

func (g *ghost) add(key uint64) {
	if len(g.ring) == 0 {
		return
	}
	if g.count == len(g.ring) {
		g.drop(g.ring[g.pos])
	} else {
		g.count++
	}
	g.ring[g.pos] = key
	g.pos = (g.pos + 1) % len(g.ring)
	if s := g.find(key); s != nil {
		s.n++
		return
	}
	g.insert(key, 1)
}

func (g *ghost) insert(key uint64, n int32) {
	for i := mix(key) & g.mask; ; i = (i + 1) & g.mask {
		if s := &g.table[i]; s.n <= 0 {
			if s.n < 0 {
				g.tombs--
			}
			s.key, s.n = key, n
			return
		}
	}
}

// bury turns a slot into a tombstone and rebuilds the table from the ring
// when tombstones fill a quarter of it, so probe chains stay short.
func (g *ghost) bury(s *ghostSlot) {
	s.n = -1
	if g.tombs++; g.tombs < len(g.table)/4 {
		return
	}
	clear(g.table)
	g.tombs = 0
	for i := 0; i < g.count; i++ {
		key := g.ring[(g.pos-g.count+i+len(g.ring))%len(g.ring)]
		if s := g.find(key); s != nil {
			s.n++
		} else {
			g.insert(key, 1)
		}
	}
}

// drop forgets one occurrence of key (it left the ring).
func (g *ghost) drop(key uint64) {
	if s := g.find(key); s != nil {
		if s.n--; s.n == 0 {
			g.bury(s) // a tombstone keeps probe chains intact
		}
	}
}

// remove reports whether key is in the ghost set; a found key is
// forgotten from the table (its ring entry ages out harmlessly).
func (g *ghost) remove(key uint64) bool {
	s := g.find(key)
	if s == nil {
		return false
	}
	g.bury(s)
	return true
}

// mix is a 64-bit finalizer (splitmix64) spreading keys over the table.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
