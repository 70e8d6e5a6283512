// Package fair shares a lane (one queue of one model) between the batches
// waiting in it. A batch's jobs wait in its backlog (internal/records) with
// their asynq tasks parked; the feeder (feeder.go), one per lane in the
// whole fleet at a time, keeps the lane's asynq queue a few jobs deep and
// picks who fills it by stride scheduling: each flow (a batch, or a tenant
// with all its batches) has a pass that grows by 1/weight with every job it
// gets, and the flow of lowest pass gets the next one; inside a tenant, its
// batches share the same way. A flow that arrives starts at the lowest pass
// of those there, so it gets its share from its first job on, and no flow
// banks credit while it waits. The passes live in Redis with the lane, so
// the shares hold across feeders, processes and restarts.
package fair

import (
	"cmp"
	"container/heap"
	"slices"

	"github.com/mimoq/mimoq/internal/records"
)

// Passes is the scheduling state of one lane: each flow's pass, and each
// tenant batch's inner pass (keyed "i:<batch id>").
type Passes map[string]float64

// innerKey is the key of a batch's pass among its tenant's batches.
func innerKey(batchID string) string { return "i:" + batchID }

// flow is the state of one flow while a plan is made.
type flow struct {
	key     string
	weight  int
	pass    float64
	created int64 // of its oldest batch: the tie-break
	batches []int // indexes into the backlogs, oldest first
	left    int   // jobs it can still give
}

// Plan picks n jobs from the backlogs bs (each backlog gives at most its
// Len) and returns, for each pick in order, the index of the backlog it
// comes from. It advances passes, and drops from passes the flows and
// batches that have no job left to give, normalised so that the lowest
// pass is 0.
func Plan(bs []*records.Backlog, passes Passes, n int) []int {
	flows := map[string]*flow{}
	var fs []*flow
	left := make([]int64, len(bs))
	for i, b := range bs {
		if b.Len <= 0 {
			continue
		}
		left[i] = b.Len
		f := flows[b.Flow()]
		if f == nil {
			f = &flow{key: b.Flow(), created: b.CreatedMs}
			flows[f.key] = f
			fs = append(fs, f)
		}
		f.weight = max(f.weight, b.Weight)
		f.created = min(f.created, b.CreatedMs)
		f.batches = append(f.batches, i)
		f.left += int(min(b.Len, int64(n)))
	}
	// Flows new to the lane start at the lowest pass of those known; so do
	// batches new to a tenant, among the tenant's.
	base, known := lowest(fs, func(f *flow) (float64, bool) { p, ok := passes[f.key]; return p, ok })
	inner := make([]float64, len(bs))
	for _, f := range fs {
		p, ok := passes[f.key]
		if !ok || !known {
			p = base
		}
		f.pass = max(p, base)
		slices.SortFunc(f.batches, func(a, b int) int {
			return cmp.Or(cmp.Compare(bs[a].CreatedMs, bs[b].CreatedMs), cmp.Compare(bs[a].BatchID, bs[b].BatchID))
		})
		lo, _ := lowest(f.batches, func(i int) (float64, bool) { p, ok := passes[innerKey(bs[i].BatchID)]; return p, ok })
		for _, i := range f.batches {
			inner[i] = lo
			if p, ok := passes[innerKey(bs[i].BatchID)]; ok {
				inner[i] = max(p, lo)
			}
		}
	}

	h := flowHeap(slices.Clone(fs))
	heap.Init(&h)
	order := make([]int, 0, n)
	for len(order) < n && h.Len() > 0 {
		f := h[0]
		i := f.pick(bs, left, inner)
		order = append(order, i)
		left[i]--
		f.left--
		f.pass += 1 / float64(f.weight)
		if f.left == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}

	// Keep the state of the flows and batches with jobs left, lowest at 0.
	clear(passes)
	has := func(i int) bool { return left[i] > 0 }
	live := slices.DeleteFunc(fs, func(f *flow) bool { return !slices.ContainsFunc(f.batches, has) })
	lo, _ := lowest(live, func(f *flow) (float64, bool) { return f.pass, true })
	for _, f := range live {
		passes[f.key] = f.pass - lo
		if len(f.batches) < 2 {
			continue
		}
		inLo, _ := lowest(f.batches, func(i int) (float64, bool) { return inner[i], has(i) })
		for _, i := range f.batches {
			if has(i) {
				passes[innerKey(bs[i].BatchID)] = inner[i] - inLo
			}
		}
	}
	return order
}

// lowest is the lowest of the values of, over xs, that exist.
func lowest[T any](xs []T, of func(T) (float64, bool)) (float64, bool) {
	lo, found := 0.0, false
	for _, x := range xs {
		if v, ok := of(x); ok && (!found || v < lo) {
			lo, found = v, true
		}
	}
	return lo, found
}

// pick chooses the batch of f that gives the next job: the one with jobs
// left of lowest inner pass (oldest first on ties), whose inner pass then
// grows by 1/weight.
func (f *flow) pick(bs []*records.Backlog, left []int64, inner []float64) int {
	best := -1
	for _, i := range f.batches {
		if left[i] > 0 && (best < 0 || inner[i] < inner[best]) {
			best = i
		}
	}
	inner[best] += 1 / float64(max(bs[best].Weight, 1))
	return best
}

// flowHeap orders flows by pass, then age, then key.
type flowHeap []*flow

func (h flowHeap) Len() int { return len(h) }
func (h flowHeap) Less(i, j int) bool {
	if h[i].pass != h[j].pass {
		return h[i].pass < h[j].pass
	}
	if h[i].created != h[j].created {
		return h[i].created < h[j].created
	}
	return h[i].key < h[j].key
}
func (h flowHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *flowHeap) Push(x any)   { *h = append(*h, x.(*flow)) }
func (h *flowHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}
