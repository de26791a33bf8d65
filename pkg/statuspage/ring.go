package statuspage

// ring is a fixed-size ring buffer: pushing onto a full ring overwrites the
// oldest element.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest element
	n     int
}

func newRing[T any](size int) *ring[T] { return &ring[T]{buf: make([]T, max(size, 1))} }

func (r *ring[T]) push(v T) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = v
		r.n++
		return
	}
	r.buf[r.start] = v
	r.start = (r.start + 1) % len(r.buf)
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th element, 0 being the oldest.
func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

// last returns the newest element.
func (r *ring[T]) last() T { return r.at(r.n - 1) }
