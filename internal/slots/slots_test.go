package slots

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		size    int
		weights map[string]int
	}{
		{"zero size", 0, nil},
		{"negative size", -3, nil},
		{"zero weight", 2, map[string]int{"batch": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tc.size, tc.weights); err == nil {
				t.Fatalf("New(%d, %v) accepted", tc.size, tc.weights)
			}
		})
	}
}

// Many goroutines hammering the pool never hold more than its size.
func TestNeverMoreThanSize(t *testing.T) {
	t.Parallel()
	const size = 5
	p, err := New(size, map[string]int{"interactive": 4, "batch": 1})
	if err != nil {
		t.Fatal(err)
	}
	var held, most atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		class := "batch"
		if i%3 == 0 {
			class = "interactive"
		}
		wg.Go(func() {
			for range 20 {
				release, err := p.Acquire(context.Background(), class)
				if err != nil {
					t.Error(err)
					return
				}
				n := held.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				held.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if most.Load() > size {
		t.Fatalf("%d slots held at once, pool size %d", most.Load(), size)
	}
	if p.InUse() != 0 || p.Waiting() != 0 {
		t.Fatalf("after all released: in use %d, waiting %d", p.InUse(), p.Waiting())
	}
}

// A waiter whose context ends holds no slot, and the slot it did not get
// goes to the next waiter.
func TestCanceledWaiterHoldsNothing(t *testing.T) {
	t.Parallel()
	p, _ := New(1, nil)
	release, err := p.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(ctx, "a")
		errc <- err
	}()
	waitFor(t, func() bool { return p.Waiting() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter got %v, want context.Canceled", err)
	}
	if p.Waiting() != 0 {
		t.Fatalf("%d waiters after cancel, want 0", p.Waiting())
	}
	release()
	release() // a second call is a no-op
	if p.InUse() != 0 {
		t.Fatalf("%d in use after release, want 0", p.InUse())
	}
	r2, err := p.Acquire(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

// An ended context is refused when it would have to wait.
func TestEndedContextDoesNotQueue(t *testing.T) {
	t.Parallel()
	p, _ := New(1, nil)
	release, _ := p.Acquire(context.Background(), "a")
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Acquire(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if p.Waiting() != 0 {
		t.Fatalf("%d waiters, want 0", p.Waiting())
	}
}

// Waiters of one class are served in the order they came.
func TestFIFOWithinClass(t *testing.T) {
	t.Parallel()
	p, _ := New(1, nil)
	release, _ := p.Acquire(context.Background(), "a")
	order := make(chan int, 5)
	for i := range 5 {
		go func() {
			r, err := p.Acquire(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			r()
		}()
		waitFor(t, func() bool { return p.Waiting() == i+1 })
	}
	release()
	for want := range 5 {
		if got := <-order; got != want {
			t.Fatalf("waiter %d served in place %d", got, want)
		}
	}
}

// With both classes always waiting, slots go to them by weight: the lighter
// class gets its share too (the upper bound).
func TestWeightedBetweenClasses(t *testing.T) {
	t.Parallel()
	p, _ := New(1, map[string]int{"interactive": 4, "batch": 1})
	hold, _ := p.Acquire(context.Background(), "x")
	const perClass = 2000
	var mu sync.Mutex
	sequence := make([]string, 0, 2*perClass)
	var wg sync.WaitGroup
	for _, class := range []string{"interactive", "batch"} {
		for range perClass {
			wg.Go(func() {
				r, err := p.Acquire(context.Background(), class)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sequence = append(sequence, class)
				mu.Unlock()
				r()
			})
		}
	}
	waitFor(t, func() bool { return p.Waiting() == 2*perClass })
	hold()
	wg.Wait()
	// Count the interactive share while both classes still had waiters:
	// the first perClass grants (neither class can be exhausted before).
	interactive := 0
	for _, c := range sequence[:perClass] {
		if c == "interactive" {
			interactive++
		}
	}
	share := float64(interactive) / perClass
	if share < 0.7 || share > 0.9 {
		t.Fatalf("interactive got %.2f of the slots while both waited, want ≈ 0.8 (weights 4:1)", share)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}
