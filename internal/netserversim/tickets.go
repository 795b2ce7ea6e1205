package netserversim

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// ticketStore holds the tickets the simulator issued. Real NetServer tickets are opaque
// strings starting "7T:" (protocol doc §7.4); ours are "7T:" + base64 of 32 random bytes.
type ticketStore struct {
	mu      sync.Mutex
	ttl     time.Duration
	sliding bool
	now     func() time.Time
	m       map[string]time.Time // ticket → expiry
	issued  []string             // every ticket ever issued, for audits of where tickets end up
}

func newTicketStore(ttl time.Duration, sliding bool, now func() time.Time) *ticketStore {
	return &ticketStore{ttl: ttl, sliding: sliding, now: now, m: map[string]time.Time{}}
}

func (s *ticketStore) issue() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	t := "7T:" + base64.StdEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[t] = s.now().Add(s.ttl)
	s.issued = append(s.issued, t)
	return t
}

func (s *ticketStore) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// valid reports whether t was issued, not expired and not invalidated; with sliding expiry
// a successful check extends the ticket by the TTL.
func (s *ticketStore) valid(t string) bool {
	if t == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.m[t]
	if !ok {
		return false
	}
	now := s.now()
	if !now.Before(exp) {
		delete(s.m, t)
		return false
	}
	if s.sliding {
		s.m[t] = now.Add(s.ttl)
	}
	return true
}

func (s *ticketStore) expireAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
}
