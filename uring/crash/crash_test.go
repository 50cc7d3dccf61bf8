//go:build linux

package crash

import (
	"bytes"
	"math/rand"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestCrashImages drives a known sequence through a Host and checks each
// crash image against the durable and current content at that point.
func TestCrashImages(t *testing.T) {
	for _, name := range []string{"uring", "psync"} {
		t.Run(name, func(t *testing.T) {
			b, err := uring.New(uring.Options{Backend: name})
			if err != nil {
				t.Fatal(err)
			}
			h := Wrap(b)
			defer h.Close()
			f, err := os.CreateTemp(t.TempDir(), "f")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			initial := bytes.Repeat([]byte{1}, 3*BlockSize)
			f.Write(initial)
			fd := int32(f.Fd())
			if err := h.Track(int(fd)); err != nil {
				t.Fatal(err)
			}
			k, _ := KeyOf(int(fd))
			a := bytes.Repeat([]byte{0xa}, BlockSize)
			c := bytes.Repeat([]byte{0xc}, BlockSize)
			steps := []uring.Request{
				{Op: uring.OpWrite, Fd: fd, Off: 0, Buf: a},             // 1
				{Op: uring.OpFsync, Fd: fd},                             // 2
				{Op: uring.OpWrite, Fd: fd, Off: 2 * BlockSize, Buf: c}, // 3
				{Op: uring.OpFtruncate, Fd: fd, Off: 5 * BlockSize},     // 4
				{Op: uring.OpFallocate, Fd: fd, Off: BlockSize, Len: BlockSize,
					Flags: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}, // 5
			}
			for i := range steps {
				if i%2 == 0 {
					if _, err := uring.Do(h, steps[i]); err != nil {
						t.Fatalf("step %d: %v", i+1, err)
					}
				} else {
					one := steps[i : i+1]
					if err := h.Submit(one); err != nil || one[0].Err != nil {
						t.Fatalf("step %d: %v %v", i+1, err, one[0].Err)
					}
				}
			}
			if h.Seq() != 5 {
				t.Fatalf("recorded %d ops, want 5: %v", h.Seq(), h.Ops(k))
			}
			afterSync := append(append([]byte{}, a...), initial[BlockSize:]...)
			final := append(append(append([]byte{}, a...), make([]byte, BlockSize)...), c...)
			final = append(final, make([]byte, 2*BlockSize)...)
			host, _ := os.ReadFile(f.Name())
			if !bytes.Equal(h.Current(k, 5), host) || !bytes.Equal(host, final) {
				t.Fatalf("current image differs from the host file")
			}
			if d, seq := h.Durable(k, 5); seq != 2 || !bytes.Equal(d, afterSync) {
				t.Fatalf("durable at 5: seq %d", seq)
			}
			if d, seq := h.Durable(k, 1); seq != 0 || !bytes.Equal(d, initial) {
				t.Fatalf("durable at 1: seq %d", seq)
			}
			rng := rand.New(rand.NewSource(1))
			if got := h.Crash(k, 5, 0, false, rng); !bytes.Equal(got, afterSync) {
				t.Fatal("keep 0 must give the durable image")
			}
			if got := h.Crash(k, 5, 1, false, rng); !bytes.Equal(got, final) {
				t.Fatal("keep 1 must give the current image")
			}
			unsynced := h.Unsynced(k, 5)
			if len(unsynced) != 2 { // blocks 1 (punched) and 2 (c); 3 and 4 grew as zeros
				t.Fatalf("unsynced blocks %v", unsynced)
			}
			// Any image: synced blocks outside the unsynced set are intact.
			for i := 0; i < 200; i++ {
				img := h.Crash(k, 5, rng.Float64(), true, rng)
				if !bytes.Equal(img[:BlockSize], a) {
					t.Fatal("a synced block changed in a crash image")
				}
			}
			t.Logf("%s: 5 ops recorded, crash images at 0/100%% keep exact, 200 random images keep the synced block", name)
		})
	}
}
