// Package fuzzbytes decodes the inputs of the project's fuzz targets: a
// Reader hands out an input's bytes, and little-endian numbers made of
// them, in order.
//
// # Invariants
//
// Past the end of its input a Reader returns zeros, so that every input
// decodes, however short; Left says how many bytes remain.
//
// # Lock order
//
// None: a Reader is used by one goroutine.
//
// # Memory ownership
//
// A Reader keeps the slice it was made from and never writes it; the
// caller must not change it while the Reader is in use.
package fuzzbytes
