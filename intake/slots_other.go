//go:build !unix

package intake

// allocSlots returns n zeroed slots on the Go heap.
func allocSlots(n int) ([]uint64, func()) { return make([]uint64, n), func() {} }
