package records

import (
	"testing"
)

// TestFinishCountsTheSpendOnce: a batch job's success adds its cost to the
// batch's spend in the same step as its outcome (a crash in between cannot
// leave the spend short), and a replayed or stale write adds nothing.
func TestFinishCountsTheSpendOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.batch("spend", 3, 3, true)
	if err := b.s.SetMaxCost(b.ctx, "spend", 100); err != nil {
		t.Fatal(err)
	}
	paid := succeeded
	paid.CostPico = 60

	first := b.begin(ids[0]).Delivery
	if f := b.finish(first, paid); f.Written != Applied || f.SpendPico != 60 || f.MaxPico != 100 {
		t.Fatalf("first success: %+v, want spend 60 of 100", f)
	}
	if f := b.finish(first, paid); f.Written != Replayed || f.SpendPico != 0 {
		t.Errorf("replayed success: %+v, want nothing added", f)
	}
	old := b.begin(ids[1]).Delivery
	cur := b.begin(ids[1]).Delivery
	if f := b.finish(old, paid); f.Written != Stale || f.SpendPico != 0 {
		t.Errorf("stale success: %+v, want nothing added", f)
	}
	if f := b.finish(cur, died); f.Written != Applied || f.SpendPico != 0 {
		t.Errorf("a death: %+v, want no spend", f)
	}
	if f := b.finish(b.begin(ids[2]).Delivery, paid); f.SpendPico != 120 || f.MaxPico != 100 || !f.BatchEnded {
		t.Errorf("second success: %+v, want spend 120 of 100", f)
	}
	sp, err := b.s.BatchSpend(b.ctx, "spend")
	if err != nil || sp.Pico != 120 || sp.MaxPico != 100 {
		t.Errorf("batch spend %+v, %v; want 120 of 100", sp, err)
	}
	if ttl := b.rdb.TTL(b.ctx, spendKey("spend")).Val(); ttl <= 0 {
		t.Errorf("spend TTL %s, want the result TTL", ttl)
	}

	// A single job has no batch spend.
	single := b.submit()
	if f := b.finish(b.begin(single).Delivery, paid); f.Written != Applied || f.SpendPico != 0 {
		t.Errorf("single job's success: %+v, want no batch spend", f)
	}
}
