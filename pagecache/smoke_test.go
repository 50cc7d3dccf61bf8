//go:build linux

package pagecache

import (
	"bytes"
	"math/rand"
	"os"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

func TestSmokeModel(t *testing.T) {
	for _, be := range []string{"uring", "psync"} {
		b, err := uring.New(uring.Options{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Options{Capacity: 16 * PageSize, Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		fh, _ := os.CreateTemp(t.TempDir(), "x")
		f, _ := c.NewFile(int32(fh.Fd()), -1, 0)
		model := []byte{}
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 20000; i++ {
			switch rng.Intn(6) {
			case 0, 1:
				off := rng.Int63n(200 * PageSize)
				n := rng.Intn(3 * PageSize)
				p := make([]byte, n)
				rng.Read(p)
				w, _, err := f.WriteAt(p, off, 0)
				if err != nil || w != n {
					t.Fatal(err, w, n)
				}
				if int(off)+n > len(model) {
					model = append(model, make([]byte, int(off)+n-len(model))...)
				}
				copy(model[off:], p)
			case 2, 3:
				off := rng.Int63n(210 * PageSize)
				p := make([]byte, rng.Intn(3*PageSize))
				r, err := f.ReadAt(p, off)
				if err != nil {
					t.Fatal(err)
				}
				want := 0
				if int(off) < len(model) {
					want = min(len(p), len(model)-int(off))
				}
				if r != want || !bytes.Equal(p[:r], model[off:int(off)+r]) {
					t.Fatalf("%s op %d: read mismatch off=%d n=%d want=%d", be, i, off, r, want)
				}
			case 4:
				if rng.Intn(10) == 0 {
					if err := f.Writeback(Range{0, 1 << 40}, SyncData); err != nil {
						t.Fatal(err)
					}
				}
			case 5:
				if rng.Intn(20) == 0 {
					sz := rng.Int63n(220 * PageSize)
					if err := f.Truncate(sz); err != nil {
						t.Fatal(err)
					}
					if int(sz) < len(model) {
						model = model[:sz]
					} else {
						model = append(model, make([]byte, int(sz)-len(model))...)
					}
				}
			}
			if f.Size() != int64(len(model)) {
				t.Fatalf("op %d size %d want %d", i, f.Size(), len(model))
			}
		}
		if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
			t.Fatal(err)
		}
		host, _ := os.ReadFile(fh.Name())
		if !bytes.Equal(host, model) {
			t.Fatalf("%s host differs from model (len %d vs %d)", be, len(host), len(model))
		}
		t.Logf("%s %+v", be, c.Stats())
		if err := f.Release(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
}
