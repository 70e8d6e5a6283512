package fair

import (
	"testing"

	"github.com/mimoq/mimoq/internal/records"
)

func backlog(id string, created int64, n int64, weight int, tenant string) *records.Backlog {
	return &records.Backlog{BatchID: id, Model: "m", State: "running", CreatedMs: created, Len: n, Weight: weight, Tenant: tenant}
}

// counts runs rounds plans of n picks each, carrying the passes from one
// to the next as the feeder does, and counts the picks per batch.
func counts(bs []*records.Backlog, passes Passes, rounds, n int) map[string]int {
	got := map[string]int{}
	for range rounds {
		for _, i := range Plan(bs, passes, n) {
			got[bs[i].BatchID]++
			bs[i].Len--
		}
	}
	return got
}

func TestPlanShares(t *testing.T) {
	tests := []struct {
		name   string
		bs     []*records.Backlog
		rounds int
		n      int
		want   map[string]int
	}{
		{"two batches alternate", []*records.Backlog{backlog("x", 1, 5000, 1, ""), backlog("y", 2, 50, 1, "")},
			1, 20, map[string]int{"x": 10, "y": 10}},
		{"one job per round keeps alternating", []*records.Backlog{backlog("x", 1, 5000, 1, ""), backlog("y", 2, 50, 1, "")},
			20, 1, map[string]int{"x": 10, "y": 10}},
		{"a small batch gives what it has", []*records.Backlog{backlog("x", 1, 5000, 1, ""), backlog("y", 2, 3, 1, "")},
			1, 20, map[string]int{"x": 17, "y": 3}},
		{"weights 1:1:2", []*records.Backlog{backlog("a", 1, 1000, 1, ""), backlog("b", 2, 1000, 1, ""), backlog("c", 3, 1000, 2, "")},
			40, 10, map[string]int{"a": 100, "b": 100, "c": 200}},
		{"a tenant's five batches share one share", []*records.Backlog{
			backlog("t1", 1, 1000, 1, "acme"), backlog("t2", 2, 1000, 1, "acme"), backlog("t3", 3, 1000, 1, "acme"),
			backlog("t4", 4, 1000, 1, "acme"), backlog("t5", 5, 1000, 1, "acme"), backlog("solo", 6, 1000, 1, "other")},
			50, 10, map[string]int{"t1": 50, "t2": 50, "t3": 50, "t4": 50, "t5": 50, "solo": 250}},
		{"a batch of a tenant against a batch without", []*records.Backlog{backlog("x", 1, 1000, 1, "acme"), backlog("y", 2, 1000, 1, "")},
			10, 10, map[string]int{"x": 50, "y": 50}},
		{"empty backlogs get nothing", []*records.Backlog{backlog("x", 1, 0, 1, ""), backlog("y", 2, 10, 1, "")},
			1, 4, map[string]int{"y": 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := counts(tt.bs, Passes{}, tt.rounds, tt.n)
			if len(got) != len(tt.want) {
				t.Fatalf("picks %v, want %v", got, tt.want)
			}
			for id, w := range tt.want {
				if got[id] != w {
					t.Errorf("batch %s got %d picks, want %d (all: %v)", id, got[id], w, got)
				}
			}
		})
	}
}

// TestPlanNewcomerStartsEven checks that a flow arriving after another ran
// alone gets its share at once, neither waiting for the other's head start
// nor taking every slot to catch up.
func TestPlanNewcomerStartsEven(t *testing.T) {
	x := backlog("x", 1, 5000, 1, "")
	passes := Passes{}
	counts([]*records.Backlog{x}, passes, 10, 10)
	y := backlog("y", 2, 50, 1, "")
	got := counts([]*records.Backlog{x, y}, passes, 1, 10)
	if got["x"] != 5 || got["y"] != 5 {
		t.Errorf("after x ran alone for 100 jobs, 10 picks went %v, want 5 and 5", got)
	}
}

// TestPlanForgetsFinishedFlows checks that passes keep only flows with
// jobs left, normalised to start at 0.
func TestPlanForgetsFinishedFlows(t *testing.T) {
	passes := Passes{"b:gone": 7}
	bs := []*records.Backlog{backlog("x", 1, 100, 1, ""), backlog("y", 2, 2, 1, "")}
	Plan(bs, passes, 10)
	if len(passes) != 1 || passes["b:x"] != 0 {
		t.Errorf("passes after y ran out: %v, want only b:x at 0", passes)
	}
}

// TestPlanOrderAlternates checks the interleaving, not only the counts.
func TestPlanOrderAlternates(t *testing.T) {
	bs := []*records.Backlog{backlog("x", 1, 100, 1, ""), backlog("y", 2, 100, 1, ""), backlog("z", 3, 100, 2, "")}
	order := Plan(bs, Passes{}, 8)
	got := ""
	for _, i := range order {
		got += bs[i].BatchID
	}
	// Ties break by age (x, y, z); z's pass grows half as fast.
	if got != "xyzzxyzz" {
		t.Errorf("order %s, want xyzzxyzz", got)
	}
}
