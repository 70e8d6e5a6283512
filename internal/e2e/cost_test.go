package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/price"
)

// TestCostsAddUpAndMaxCostStopsABatch: every answered job costs its usage
// at the list price of its model, the batch's cost is exactly their sum
// (batch status, the HTTP-facing record), and a batch submitted with
// --max-cost stops once its spend reaches it: its jobs not started are
// canceled with reason budget_exhausted.
func TestCostsAddUpAndMaxCostStopsABatch(t *testing.T) {
	t.Parallel()
	f := setup(t, "--latency", "10ms")
	f.startWorker("MIMOQ_RPM=300", "MIMOQ_CONCURRENCY=2")
	var lines []string
	for i := range 6 {
		m := apiclient.ModelFlash
		if i%2 == 1 {
			m = apiclient.ModelPro
		}
		lines = append(lines, batchLine(fmt.Sprintf("c%d", i), m, strings.Repeat("word ", 10*(i+1))))
	}
	f.submitBatchFile(writeLines(t, lines...), "costs")
	b, jobs := f.waitBatchFinal("costs", 30*time.Second)
	prices := price.Default()
	var sum int64
	for _, j := range jobs {
		if j.Usage == nil || j.Cost == nil {
			t.Fatalf("job %s: usage %+v cost %+v", j.CustomID, j.Usage, j.Cost)
		}
		pico, _ := prices.CostPicoUSD(j.Model, price.Usage{PromptTokens: j.Usage.PromptTokens,
			CachedTokens: j.Usage.CachedTokens, CompletionTokens: j.Usage.CompletionTokens})
		if got := int64(math.Round(j.Cost.USD * 1e12)); got != pico {
			t.Errorf("job %s costs %d pico-USD, want %d", j.CustomID, got, pico)
		}
		sum += pico
	}
	if b.Cost == nil || int64(math.Round(b.Cost.USD*1e12)) != sum {
		t.Fatalf("batch cost %+v, want the sum of its jobs' %d pico-USD", b.Cost, sum)
	}
	out, _, _ := f.run("batch", "status", "costs")
	if !strings.Contains(out, fmt.Sprintf("$%.6f", float64(sum)/1e12)) {
		t.Errorf("batch status does not show the cost:\n%s", out)
	}
	if out, _, _ := f.run("batch", "list"); !strings.Contains(out, "COST") {
		t.Errorf("batch list:\n%s", out)
	}

	// A budget of a few answers, for a batch of 40 at 5 calls/s.
	budget := 3.5 * float64(sum) / 6 / 1e12
	lines = lines[:0]
	for i := range 40 {
		lines = append(lines, batchLine(fmt.Sprintf("m%d", i), apiclient.ModelFlash, strings.Repeat("word ", 35)))
	}
	if _, stderr, code := f.run("batch", "submit", writeLines(t, lines...), "--id", "capped", "--max-cost",
		fmt.Sprint(budget)); code != 0 {
		t.Fatalf("batch submit --max-cost: %d %s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	capped, err := f.client.WaitBatch(ctx, "capped")
	if err != nil {
		t.Fatal(err)
	}
	if capped.State != enqueue.BatchCanceled || capped.CancelReason != "budget_exhausted" || capped.Canceled < 20 ||
		capped.Succeeded < 1 || capped.Succeeded+capped.Canceled != 40 {
		t.Fatalf("capped batch: %s (%s), %d succeeded, %d canceled", capped.State, capped.CancelReason,
			capped.Succeeded, capped.Canceled)
	}
	if capped.Cost.USD < budget || capped.MaxCostUSD != budget {
		t.Errorf("capped batch spent %v of %v (max %v)", capped.Cost.USD, budget, capped.MaxCostUSD)
	}
	out, _, _ = f.run("batch", "status", "capped", "--json")
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec["cancel_reason"] != "budget_exhausted" || rec["cost"] == nil {
		t.Errorf("batch status --json: %v %s", err, out)
	}
	if out, _, _ := f.run("batch", "status", "capped"); !strings.Contains(out, "budget_exhausted") {
		t.Errorf("batch status:\n%s", out)
	}
	if m := f.modelStats(apiclient.ModelFlash); m.CostLastHour.USD <= 0 {
		t.Errorf("stats: cost in the last hour %v", m.CostLastHour.USD)
	}
}
