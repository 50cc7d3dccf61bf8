package fuzzbytes

// Reader hands out the bytes of a fuzz input.
type Reader struct{ data []byte }

// New returns a Reader of data.
func New(data []byte) *Reader { return &Reader{data: data} }

// Left returns how many bytes of the input remain.
func (r *Reader) Left() int { return len(r.data) }

// Byte returns the next byte, or 0 past the end.
func (r *Reader) Byte() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

// Uint returns the next k bytes (k ≤ 8) as a little-endian number.
func (r *Reader) Uint(k int) uint64 {
	var v uint64
	for i := range k {
		v |= uint64(r.Byte()) << (8 * i)
	}
	return v
}
