//go:build linux

package hostmap

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRefs decodes a sequence of IncRef, DecRef and MapInternal calls
// from the input and checks every result against a model of page
// references: IncRef always succeeds, DecRef fails exactly when some
// chunk's total cannot cover its pages (and then changes nothing),
// MapInternal succeeds exactly when every chunk it touches is referenced,
// the per-chunk counts equal the model's sums after every call, and a
// chunk is mapped only while referenced. `go test` runs the seed corpus
// in testdata/fuzz/FuzzRefs.
func FuzzRefs(f *testing.F) {
	path := filepath.Join(f.TempDir(), "sparse")
	file, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	const chunks = 8
	if err := file.Truncate(chunks * ChunkSize); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m := NewMapper(int(file.Fd()))
		defer m.Close()
		model := map[int64]int64{} // page -> references
		chunkSum := func(ci int64) int64 {
			var s int64
			for p, n := range model {
				if p*pageSize>>chunkShift == ci {
					s += n
				}
			}
			return s
		}
		for len(in) >= 6 {
			op := in[0] % 3
			// A start near a chunk boundary and a length of up to ~2 chunks.
			start := int64(in[1]%chunks)*ChunkSize + (int64(int8(in[2])) * pageSize / 4)
			length := int64(in[3])<<16 | int64(in[4])<<8 | int64(in[5])
			in = in[6:]
			start = max(0, min(start, chunks*ChunkSize-1))
			r := Range{start, min(start+length, chunks*ChunkSize)}
			pr := r.RoundOut()
			switch op {
			case 0:
				if err := m.IncRef(r); err != nil {
					t.Fatalf("IncRef(%v): %v", r, err)
				}
				for p := pr.Start / pageSize; p < pr.End/pageSize; p++ {
					model[p]++
				}
			case 1:
				want := true
				for ci := pr.Start >> chunkShift; pr.Length() > 0 && ci <= (pr.End-1)>>chunkShift; ci++ {
					if chunkSum(ci) < pagesIn(pr, ci) {
						want = false
					}
				}
				err := m.DecRef(r)
				if (err == nil) != want {
					t.Fatalf("DecRef(%v): %v, model says success=%v", r, err, want)
				}
				if err == nil {
					for p := pr.Start / pageSize; p < pr.End/pageSize; p++ {
						model[p]--
					}
				}
			case 2:
				want := true
				for ci := r.Start >> chunkShift; r.Length() > 0 && ci <= (r.End-1)>>chunkShift; ci++ {
					if chunkSum(ci) == 0 {
						want = false
					}
				}
				_, err := m.MapInternal(r, in != nil && len(in)%2 == 0)
				if (err == nil) != want {
					t.Fatalf("MapInternal(%v): %v, model says success=%v", r, err, want)
				}
			}
			want := map[int64]int32{}
			for ci := range int64(chunks) {
				if s := chunkSum(ci); s != 0 {
					want[ci] = int32(s)
				}
			}
			if got := m.refTable(); !maps.Equal(got, want) {
				t.Fatalf("after op %d on %v: counts %v, model %v", op, r, got, want)
			}
			for ci := range int64(chunks) {
				if m.chunkAddr(ci) != 0 && want[ci] == 0 {
					t.Fatalf("chunk %d mapped with no references", ci)
				}
			}
			if err := m.checkInvariants(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
