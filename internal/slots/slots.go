// Package slots is a counting semaphore whose waiters are served by class
// weight. A worker process runs one asynq server per model, so that each
// model's queues are polled by their own dequeue loop; the pool keeps the
// process's in-flight jobs at MIMOQ_CONCURRENCY across all of them, and
// serves the lanes by their weights, as asynq does with the queues of one
// server: a long batch on one model never starves single calls on another.
// A job takes a slot only for its call, once its lane has given it a permit:
// a lane that cannot call (cooling down after a 429, paused, at its rate
// limit) holds no slots while it waits.
package slots

import (
	"container/list"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
)

// Pool hands out a fixed number of slots. When a slot frees and several
// classes have waiters, the next holder's class is drawn at random in
// proportion to the class weights; waiters of one class are served in order.
type Pool struct {
	mu      sync.Mutex
	size    int
	free    int
	weights map[string]int
	waiting map[string]*list.List // class → FIFO of chan struct{}
	queued  int
}

// New returns a pool of size slots. weights gives each class its share when
// classes compete; a class without a weight has weight 1.
func New(size int, weights map[string]int) (*Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("slots: size %d, want at least 1", size)
	}
	w := make(map[string]int, len(weights))
	for c, n := range weights {
		if n < 1 {
			return nil, fmt.Errorf("slots: class %q has weight %d, want at least 1", c, n)
		}
		w[c] = n
	}
	return &Pool{size: size, free: size, weights: w, waiting: make(map[string]*list.List)}, nil
}

// TryAcquire takes a slot if one is free and nobody waits, without waiting
// (and without the timer a bounded wait needs): ok reports whether it did.
func (p *Pool) TryAcquire() (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free > 0 && p.queued == 0 {
		p.free--
		return p.releaser(), true
	}
	return nil, false
}

// Acquire waits for a slot for a job of class. It returns the function that
// gives the slot back (call it exactly once), or ctx's error when ctx ends
// first, holding no slot then.
func (p *Pool) Acquire(ctx context.Context, class string) (release func(), err error) {
	p.mu.Lock()
	if p.free > 0 && p.queued == 0 {
		p.free--
		p.mu.Unlock()
		return p.releaser(), nil
	}
	if err := ctx.Err(); err != nil {
		p.mu.Unlock()
		return nil, err
	}
	l := p.waiting[class]
	if l == nil {
		l = list.New()
		p.waiting[class] = l
	}
	ch := make(chan struct{}, 1)
	el := l.PushBack(ch)
	p.queued++
	p.mu.Unlock()

	select {
	case <-ch:
		return p.releaser(), nil
	case <-ctx.Done():
		p.mu.Lock()
		select {
		case <-ch:
			// Granted while ctx ended: pass the slot on.
			p.mu.Unlock()
			p.release()
		default:
			l.Remove(el)
			p.queued--
			p.mu.Unlock()
		}
		return nil, ctx.Err()
	}
}

// InUse is the number of slots held.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size - p.free
}

// Waiting is the number of waiters.
func (p *Pool) Waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued
}

func (p *Pool) releaser() func() {
	var once sync.Once
	return func() { once.Do(p.release) }
}

// release hands the slot to a waiter, or frees it.
func (p *Pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queued == 0 {
		p.free++
		return
	}
	l := p.pick()
	ch := l.Remove(l.Front()).(chan struct{})
	p.queued--
	ch <- struct{}{}
}

// pick draws the class that gets the next slot, weighted, among those with
// waiters. The caller holds mu and knows someone waits.
func (p *Pool) pick() *list.List {
	total := 0
	for c, l := range p.waiting {
		if l.Len() > 0 {
			total += p.weight(c)
		}
	}
	n := rand.IntN(total)
	var last *list.List
	for c, l := range p.waiting {
		if l.Len() == 0 {
			continue
		}
		last = l
		if n -= p.weight(c); n < 0 {
			return l
		}
	}
	return last
}

func (p *Pool) weight(class string) int {
	if w, ok := p.weights[class]; ok {
		return w
	}
	return 1
}
