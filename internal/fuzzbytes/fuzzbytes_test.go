package fuzzbytes

import "testing"

// TestReader: bytes come in order, numbers are little-endian, and past
// the end everything reads as zero.
func TestReader(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		read  func(r *Reader) uint64
		want  uint64
		left  int
	}{
		{"byte", []byte{7, 8}, func(r *Reader) uint64 { return uint64(r.Byte()) }, 7, 1},
		{"uint16 little-endian", []byte{0x34, 0x12, 9}, func(r *Reader) uint64 { return r.Uint(2) }, 0x1234, 1},
		{"uint24", []byte{1, 2, 3}, func(r *Reader) uint64 { return r.Uint(3) }, 0x030201, 0},
		{"short input ends in zeros", []byte{0xff}, func(r *Reader) uint64 { return r.Uint(2) }, 0xff, 0},
		{"empty input", nil, func(r *Reader) uint64 { return uint64(r.Byte()) + r.Uint(8) }, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.input)
			if got := tc.read(r); got != tc.want {
				t.Fatalf("read %#x, want %#x", got, tc.want)
			}
			if r.Left() != tc.left {
				t.Fatalf("%d bytes left, want %d", r.Left(), tc.left)
			}
		})
	}
}
