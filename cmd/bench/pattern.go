//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
)

// The file's contents are a deterministic pattern, so that any read can be
// checked without a copy of the file. The unit is a 4 KiB block:
//
//	bytes 0..7    the block's file offset XOR headerMagic
//	bytes 8..15   the generation XOR genMagic
//	bytes 16..    the generation's body (pseudo-random bytes seeded by it)
//
// Generation 0 is what the file is filled with; every write cell writes
// its own generation, so a read proves both where a block came from (the
// offset) and which write produced it (the generation). Making a block
// costs a 16-byte header store, so writers are not slowed by the check.
const (
	patternBlock = 4096
	headerMagic  = 0x72696e6766732d62 // "ringfs-b"
	genMagic     = 0x62656e6368000000 // "bench"
	// maxGen bounds the generations: one per write cell of the full
	// matrix, plus 0.
	maxGen = 1 + 8*16
)

var bodies = func() [maxGen][]byte {
	var b [maxGen][]byte
	for g := range b {
		r := rand.NewChaCha8([32]byte{byte(g), byte(g >> 8), 'r', 'i', 'n', 'g', 'f', 's'})
		b[g] = make([]byte, patternBlock-16)
		r.Read(b[g])
	}
	return b
}()

// stamp writes the pattern of generation gen for the blocks of buf, which
// is at file offset off (both multiples of patternBlock). Only the headers
// are written when buf already holds gen's bodies (see prepare).
func stamp(buf []byte, off int64, gen int) {
	for i := 0; i < len(buf); i += patternBlock {
		binary.LittleEndian.PutUint64(buf[i:], uint64(off+int64(i))^headerMagic)
		binary.LittleEndian.PutUint64(buf[i+8:], uint64(gen)^genMagic)
	}
}

// prepare fills buf with gen's bodies, once per buffer.
func prepare(buf []byte, gen int) {
	for i := 0; i < len(buf); i += patternBlock {
		copy(buf[i+16:i+patternBlock], bodies[gen])
	}
}

// verify checks that buf, read at off, holds the pattern of generation
// want for every block (any generation when want < 0).
func verify(buf []byte, off int64, want int) error {
	for i := 0; i+patternBlock <= len(buf); i += patternBlock {
		at := off + int64(i)
		h := binary.LittleEndian.Uint64(buf[i:]) ^ headerMagic
		if h != uint64(at) {
			return fmt.Errorf("block at offset %d: header names offset %d", at, int64(h))
		}
		g := binary.LittleEndian.Uint64(buf[i+8:]) ^ genMagic
		if g >= maxGen {
			return fmt.Errorf("block at offset %d: bad generation field %#x", at, g)
		}
		if want >= 0 && int(g) != want {
			return fmt.Errorf("block at offset %d: generation %d, want %d (a write was lost)", at, g, want)
		}
		if !bytes.Equal(buf[i+16:i+patternBlock], bodies[g]) {
			return fmt.Errorf("block at offset %d: body differs from generation %d's", at, g)
		}
	}
	return nil
}
