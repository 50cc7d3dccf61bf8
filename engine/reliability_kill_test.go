//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Row D2: the test binary runs itself as a child process doing I/O
// through an engine and telling the parent, over a pipe, which writes are
// acknowledged — only after the Sync (Exclusive) or the write itself
// (Writethrough) returned. The parent SIGKILLs the child at a random
// moment and checks the file with the real kernel: every acknowledged
// write must be there (or a later write of the same slot).

const (
	killSlots    = 48
	killSlotSize = 3000
	killSyncEach = 5 // Exclusive: a Sync after this many writes
)

// killWrite is the slot and data of write i of a run.
func killWrite(seed uint64, i int) (slot int, data []byte) {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	return rng.IntN(killSlots), pattern(killSlotSize, seed, uint64(i))
}

func rowD2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	if testing.Short() {
		t.Skip("starts child processes")
	}
	checkLeaks(t)
	seed := fsxSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	var kills, acked, checked int64
	for _, m := range []struct {
		name  string
		cache int64
	}{{"exclusive", fsxTinyCache}, {"exclusive", 0}, {"writethrough", fsxTinyCache}, {"writethrough", 0}} {
		for k := range 1 + soakFactor()/10 {
			s := seed + uint64(kills)
			path := filepath.Join(t.TempDir(), "killed")
			delay := time.Duration(20+rng.IntN(300)) * time.Millisecond
			n, c := killOnce(t, m.name, m.cache, s, path, delay)
			t.Logf("%s cache=%d kill %d (seed %d): SIGKILL %v after the first acknowledgement; %d writes acknowledged, all present (%d slots checked)",
				m.name, m.cache, k, s, delay, n, c)
			kills++
			acked += int64(n)
			checked += int64(c)
		}
	}
	fig.Set("kills", kills)
	fig.Set("acked_writes", acked)
	fig.Set("slots_checked", checked)
}

// killOnce runs one child, kills it delay after its first
// acknowledgement, and checks the file; it returns the acknowledged
// writes and the slots checked.
func killOnce(t *testing.T, mode string, cache int64, seed uint64, path string, delay time.Duration) (int, int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReliabilityD2Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RINGFS_D2_CHILD="+path, "RINGFS_D2_MODE="+mode,
		"RINGFS_D2_SEED="+strconv.FormatUint(seed, 10), "RINGFS_D2_CACHE="+strconv.FormatInt(cache, 10))
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var ack atomic.Int64
	first := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(r)
		once := false
		for sc.Scan() {
			var n int64
			if _, err := fmt.Sscanf(sc.Text(), "ack %d", &n); err == nil && n > ack.Load() {
				ack.Store(n)
				if !once {
					once = true
					close(first)
				}
			}
		}
	}()
	select {
	case <-first:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child acknowledged nothing in 60s:\n%s", stderr.String())
	case <-readDone:
		cmd.Wait()
		t.Fatalf("child exited before acknowledging anything:\n%s", stderr.String())
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	err = cmd.Wait()
	<-readDone
	r.Close()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL (%v): it ended on its own before the kill\n%s", err, stderr.String())
	}
	acked := int(ack.Load())
	return acked, checkKilled(t, mode, seed, path, acked)
}

// checkKilled checks the file left by a killed child: for every slot
// with an acknowledged write, each byte must come from that write or a
// later write of the slot (one the child may have made after its last
// acknowledgement, possibly torn).
func checkKilled(t *testing.T, mode string, seed uint64, path string, acked int) int {
	t.Helper()
	got := readHost(t, path)
	lastAcked := make([]int, killSlots)
	for i := range lastAcked {
		lastAcked[i] = -1
	}
	for i := range acked {
		s, _ := killWrite(seed, i)
		lastAcked[s] = i
	}
	// Writes after the last acknowledgement: at most killSyncEach plus
	// the one in progress, with some margin.
	horizon := acked + 4*killSyncEach + 8
	checked := 0
	for s, la := range lastAcked {
		if la < 0 {
			continue
		}
		var cands [][]byte
		for i := la; i < horizon; i++ {
			if cs, d := killWrite(seed, i); cs == s {
				cands = append(cands, d)
			}
		}
		off := s * killSlotSize
		if len(got) < off+killSlotSize {
			t.Fatalf("%s seed %d: file is %d bytes; acknowledged write %d of slot %d (bytes %d..%d) is gone", mode, seed, len(got), la, s, off, off+killSlotSize)
		}
		b := got[off : off+killSlotSize]
		if bytes.Equal(b, cands[0]) {
			checked++
			continue
		}
		for j := range b {
			ok := false
			for _, c := range cands {
				if b[j] == c[j] {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("%s seed %d: slot %d byte %d is %#x: neither the acknowledged write %d (%#x) nor a later one; %d writes acknowledged",
					mode, seed, s, j, b[j], la, cands[0][j], acked)
			}
		}
		checked++
	}
	return checked
}

// TestReliabilityD2Child is the child process of row D2; it does nothing
// unless started by it.
func TestReliabilityD2Child(t *testing.T) {
	path := os.Getenv("RINGFS_D2_CHILD")
	if path == "" {
		t.Skip("the child process of reliability row D2")
	}
	seed, _ := strconv.ParseUint(os.Getenv("RINGFS_D2_SEED"), 10, 64)
	cache, _ := strconv.ParseInt(os.Getenv("RINGFS_D2_CACHE"), 10, 64)
	mode := Exclusive
	if os.Getenv("RINGFS_D2_MODE") == "writethrough" {
		mode = Writethrough
	}
	acks := os.NewFile(3, "acks")
	e, err := New(Options{Mode: mode, CacheSize: cache})
	if err != nil {
		t.Fatal(err)
	}
	f, err := e.Open(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1_000_000; i++ {
		s, data := killWrite(seed, i)
		if n, err := f.WriteAt(data, int64(s*killSlotSize)); n != len(data) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		switch {
		case mode == Writethrough:
			// Returned: in the kernel, which outlives this process.
			fmt.Fprintf(acks, "ack %d\n", i+1)
		case i%killSyncEach == killSyncEach-1:
			if err := f.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			fmt.Fprintf(acks, "ack %d\n", i+1)
		}
	}
	t.Fatal("not killed")
}
