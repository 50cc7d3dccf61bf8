//go:build linux

package uring

import (
	"bytes"
	"os"
	"testing"
)

// TestManyIovecs: readv/writev with more vectors than IOV_MAX (1024) are
// resumed in pieces of at most 1024 iovecs, empty vectors included.
func TestManyIovecs(t *testing.T) {
	content := randomBytes(51, 64<<10)
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			f := tempFile(t, "f", content, os.O_RDWR)
			// 2600 vectors of 0..15 bytes.
			var vecs [][]byte
			total := 0
			for i := range 2600 {
				v := make([]byte, i%16)
				vecs = append(vecs, v)
				total += len(v)
			}
			reqs := []Request{{Op: OpReadv, Fd: int32(f.Fd()), Off: 100, Vecs: vecs}}
			if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != total {
				t.Fatalf("readv: %v (%d, %v), want %d", err, reqs[0].N, reqs[0].Err, total)
			}
			if got := bytes.Join(vecs, nil); !bytes.Equal(got, content[100:100+total]) {
				t.Fatalf("readv bytes: %s", firstDiff(got, content[100:100+total]))
			}
			for _, v := range vecs {
				for j := range v {
					v[j] ^= 0x5a
				}
			}
			reqs = []Request{{Op: OpWritev, Fd: int32(f.Fd()), Off: 200, Vecs: vecs}}
			if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != total {
				t.Fatalf("writev: %v (%d, %v)", err, reqs[0].N, reqs[0].Err)
			}
			want := append([]byte{}, content...)
			copy(want[200:], bytes.Join(vecs, nil))
			if got := fileBytes(t, f); !bytes.Equal(got, want) {
				t.Fatalf("file after writev: %s", firstDiff(got, want))
			}
			t.Logf("%d vectors (%d bytes) read and written; short resubmits %d", len(vecs), total, be.Stats().ShortResubmits)
		})
	}
}

// TestOverMaxRW reads more than the kernel's per-call cap (0x7ffff000
// bytes) in one request: it is resumed and completes with the full count.
// It needs 2 GiB of memory and time, so it runs with RINGFS_SOAK only.
func TestOverMaxRW(t *testing.T) {
	if os.Getenv("RINGFS_SOAK") == "" {
		t.Skip("reads 2 GiB per backend; set RINGFS_SOAK=1")
	}
	const size = 1<<31 + 8192
	f := tempFile(t, "big", nil, os.O_RDWR)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	marks := []int64{0, maxRW - 1, maxRW, maxRW + 1, size - 1}
	for _, m := range marks {
		if _, err := f.WriteAt([]byte{byte(m%251 + 1)}, m); err != nil {
			t.Fatal(err)
		}
	}
	buf := mmapBuffer(t, size)
	for _, name := range testBackends() {
		for _, op := range []Op{OpRead, OpReadv} {
			t.Run("backend="+name+"/op="+op.String(), func(t *testing.T) {
				be := openBackend(t, name, Options{})
				clear(buf)
				r := Request{Op: op, Fd: int32(f.Fd())}
				if op == OpRead {
					r.Buf = buf
				} else {
					r.Vecs = [][]byte{buf[:1000], buf[1000:]}
				}
				reqs := []Request{r}
				if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != size {
					t.Fatalf("%v (%d, %v), want %d", err, reqs[0].N, reqs[0].Err, int64(size))
				}
				for _, m := range marks {
					if buf[m] != byte(m%251+1) {
						t.Fatalf("byte %d is %d", m, buf[m])
					}
				}
				t.Logf("%d bytes in one request, %d resubmissions", int64(size), be.Stats().ShortResubmits)
			})
		}
	}
}
