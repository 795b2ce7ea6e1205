package intake

import (
	"hash/maphash"
	"math/bits"
)

// seenSet remembers which keys a run has taken, exactly, in memory that does not grow with
// key length.
//
// It is an open-addressing (linear probing) table of uint64 slots. A slot holds the top 32
// bits of the key's 64-bit hash and, in the low 32 bits, 1 + the index of the input record
// that holds the key. The top bits of the hash choose the home slot, so the table can be
// rebuilt at twice the size from the slots alone. A slot whose hash bits match is only a
// candidate: the caller's verify function re-reads that record from the input file and
// compares the keys byte for byte. Different keys whose stored bits collide simply occupy
// two slots, so the answer is exact whatever the hash does; a bad hash only costs re-reads.
//
// At most 7/10 of the slots are used: 8 bytes per slot makes 11.4 to 22.9 bytes per key
// (16 MiB for one million keys).
type seenSet struct {
	slots []uint64
	free  func() // releases slots
	shift uint   // 64 - log2(len(slots))
	n     int
	limit int // grow when n reaches it
	hash  func([]byte) uint64
	// verify reports whether record r holds key (re-reading it from the input).
	verify func(r uint32, key []byte) (bool, error)
	// verifies counts candidate re-reads; collisions counts those that found another key.
	verifies, collisions int
}

// maxRecords is how many records an input may have: the slot keeps the index in 32 bits.
const maxRecords = 1<<32 - 2

var hashSeed = maphash.MakeSeed()

func defaultHash(b []byte) uint64 { return maphash.Bytes(hashSeed, b) }

// newSeenSet returns a set sized for about hint keys.
func newSeenSet(hint int, hash func([]byte) uint64) *seenSet {
	if hash == nil {
		hash = defaultHash
	}
	size := 1024
	for size*7/10 < hint && size < 1<<31 {
		size *= 2
	}
	s := &seenSet{hash: hash}
	s.alloc(size)
	return s
}

func (s *seenSet) alloc(size int) {
	s.slots, s.free = allocSlots(size)
	s.shift = uint(64 - bits.TrailingZeros(uint(size)))
	s.limit = size * 7 / 10
}

// take adds the key of record rec and returns false, unless an equal key was added
// before: then it returns true.
func (s *seenSet) take(key []byte, rec uint32) (bool, error) {
	h := s.hash(key)
	hi := h >> 32
	mask := uint64(len(s.slots) - 1)
	i := h >> s.shift
	for {
		e := s.slots[i]
		if e == 0 {
			break
		}
		if e>>32 == hi {
			r := uint32(e) - 1
			s.verifies++
			same, err := s.verify(r, key)
			if err != nil {
				return false, err
			}
			if same {
				return true, nil
			}
			s.collisions++
		}
		i = (i + 1) & mask
	}
	s.slots[i] = hi<<32 | uint64(rec+1)
	s.n++
	if s.n >= s.limit {
		s.grow()
	}
	return false, nil
}

func (s *seenSet) grow() {
	old, free := s.slots, s.free
	defer free()
	s.alloc(len(old) * 2)
	mask := uint64(len(s.slots) - 1)
	hshift := s.shift - 32 // home slot from the stored top 32 bits
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := (e >> 32) >> hshift
		for s.slots[i] != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = e
	}
}

// release frees the table; the set must not be used afterwards.
func (s *seenSet) release() {
	s.free()
	s.slots, s.free = nil, func() {}
}

// bytes is the memory the table holds.
func (s *seenSet) bytes() int { return len(s.slots) * 8 }
