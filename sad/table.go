package sad

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// table is a hash table from uint64 keys to SAs with lock-free, allocation
// free reads. Each bucket is an atomic pointer to an immutable chain of
// nodes; a writer (serialised by the caller's mutex) publishes a changed
// chain by copying the nodes before the change, so an update costs O(chain)
// and never copies the table. When the table outgrows its buckets a writer
// builds a twice larger bucket array and publishes it with one atomic store;
// readers that still hold the old array see the state before the resize.
type table struct {
	cur  atomic.Pointer[buckets]
	n    int // entries; writer only
	seed uint64
}

type buckets struct {
	shift uint // 64 - log2(len(b))
	b     []atomic.Pointer[node]
}

type node struct {
	key  uint64
	sa   *SA
	next *node
}

const minBuckets = 16

func newTable() *table {
	t := &table{seed: rand.Uint64()}
	t.cur.Store(newBuckets(minBuckets))
	return t
}

func newBuckets(n int) *buckets {
	return &buckets{shift: uint(64 - bits.TrailingZeros(uint(n))), b: make([]atomic.Pointer[node], n)}
}

// slot returns the bucket of key: Fibonacci hashing of the seeded key.
func (bs *buckets) slot(key, seed uint64) *atomic.Pointer[node] {
	return &bs.b[((key^seed)*0x9e3779b97f4a7c15)>>bs.shift]
}

// get returns the SA stored under key, or nil.
func (t *table) get(key uint64) *SA {
	for n := t.cur.Load().slot(key, t.seed).Load(); n != nil; n = n.next {
		if n.key == key {
			return n.sa
		}
	}
	return nil
}

// put stores sa under key and returns the SA it displaced, if any.
func (t *table) put(key uint64, sa *SA) (old *SA) {
	s := t.cur.Load().slot(key, t.seed)
	head := s.Load()
	for n := head; n != nil; n = n.next {
		if n.key == key {
			old = n.sa
			break
		}
	}
	if old != nil {
		s.Store(&node{key: key, sa: sa, next: without(head, key)})
		return old
	}
	s.Store(&node{key: key, sa: sa, next: head})
	t.n++
	if bs := t.cur.Load(); t.n > len(bs.b) {
		t.resize(2 * len(bs.b))
	}
	return nil
}

// remove deletes key if it maps to sa and reports whether it did.
func (t *table) remove(key uint64, sa *SA) bool {
	s := t.cur.Load().slot(key, t.seed)
	head := s.Load()
	for n := head; n != nil; n = n.next {
		if n.key == key {
			if n.sa != sa {
				return false
			}
			s.Store(without(head, key))
			t.n--
			if bs := t.cur.Load(); len(bs.b) > minBuckets && t.n < len(bs.b)/8 {
				t.resize(len(bs.b) / 2)
			}
			return true
		}
	}
	return false
}

// without returns the chain head without key's node, copying the nodes
// before it and sharing those after.
func without(head *node, key uint64) *node {
	if head == nil {
		return nil
	}
	if head.key == key {
		return head.next
	}
	return &node{key: head.key, sa: head.sa, next: without(head.next, key)}
}

func (t *table) resize(n int) {
	old := t.cur.Load()
	nb := newBuckets(n)
	for i := range old.b {
		for e := old.b[i].Load(); e != nil; e = e.next {
			s := nb.slot(e.key, t.seed)
			s.Store(&node{key: e.key, sa: e.sa, next: s.Load()})
		}
	}
	t.cur.Store(nb)
}

// each calls f for every SA, without locks; it sees each entry present for
// the whole walk and may or may not see entries changed during it.
func (t *table) each(f func(*SA)) {
	bs := t.cur.Load()
	for i := range bs.b {
		for n := bs.b[i].Load(); n != nil; n = n.next {
			f(n.sa)
		}
	}
}
