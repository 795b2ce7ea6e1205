//go:build unix

package intake

import (
	"syscall"
	"unsafe"
)

// allocSlots returns n zeroed slots outside the Go heap (an anonymous private mapping),
// and the function that releases them. The table is the one big allocation of a
// submission and holds no pointers; keeping it off the heap keeps the garbage collector's
// heap goal (twice the live heap by default) from doubling it in the peak RSS.
func allocSlots(n int) ([]uint64, func()) {
	b, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n), func() {}
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n), func() { syscall.Munmap(b) }
}
