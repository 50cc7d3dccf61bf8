//go:build linux

package engine

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestSmokeModes(t *testing.T) {
	nops := 7
	if v := os.Getenv("NOPS"); v != "" {
		nops = int(v[0] - '0')
	}
	for _, opts := range []Options{
		{Mode: Exclusive, CacheSize: 16 * 4096},
		{Mode: Exclusive},
		{Mode: Writethrough, CacheSize: 32 * 4096},
		{Mode: Shared},
		{Mode: Exclusive, CacheSize: -1},
		{Mode: Exclusive, HostMmap: true},
		{Mode: Exclusive, Backend: "psync", CacheSize: 16 * 4096, Readahead: 4096},
	} {
		e, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "f")
		f, err := e.Open(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		model := []byte{}
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 5000; i++ {
			switch rng.Intn(nops) {
			case 0, 1:
				off := rng.Int63n(100 * 4096)
				p := make([]byte, rng.Intn(10000))
				rng.Read(p)
				n, err := f.WriteAt(p, off)
				if err != nil || n != len(p) {
					t.Fatal(err)
				}
				if int(off)+len(p) > len(model) {
					model = append(model, make([]byte, int(off)+len(p)-len(model))...)
				}
				copy(model[off:], p)
			case 2, 3:
				off := rng.Int63n(110 * 4096)
				p := make([]byte, rng.Intn(10000)+1)
				n, err := f.ReadAt(p, off)
				want := 0
				if int(off) < len(model) {
					want = min(len(p), len(model)-int(off))
				}
				if n != want || (n > 0 && !bytes.Equal(p[:n], model[off:int(off)+n])) || (n < len(p) && err != io.EOF) || (n == len(p) && err != nil) {
					t.Fatalf("%+v op %d: read off=%d n=%d want=%d err=%v", opts, i, off, n, want, err)
				}
			case 4:
				if rng.Intn(20) == 0 {
					if err := f.Sync(); err != nil {
						t.Fatal(err)
					}
				}
			case 5:
				if rng.Intn(20) == 0 {
					sz := rng.Int63n(120 * 4096)
					if err := f.Truncate(sz); err != nil {
						t.Fatal(err)
					}
					if int(sz) < len(model) {
						model = model[:sz]
					} else {
						model = append(model, make([]byte, int(sz)-len(model))...)
					}
				}
			case 6:
				if rng.Intn(50) == 0 {
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					if f, err = e.Open(path, os.O_RDWR, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			fi, err := f.Stat()
			if err != nil || fi.Size() != int64(len(model)) {
				t.Fatalf("%+v op %d: size %d want %d (%v)", opts, i, fi.Size(), len(model), err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st := e.Stats()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		host, _ := os.ReadFile(path)
		if !bytes.Equal(host, model) {
			first := -1
			for i := range min(len(host), len(model)) {
				if host[i] != model[i] {
					first = i
					break
				}
			}
			t.Fatalf("%+v: host differs from model: len %d vs %d, first diff %d", opts, len(host), len(model), first)
		}
		t.Logf("%s cache=%v reads=%d/%d writes=%d sqes/enter=%.1f", st.Mode, st.CacheEnabled, st.Reads.CacheHit.Ops, st.Reads.Ops(), st.Writes.Ops(), st.SQEsPerEnter)
	}
}
