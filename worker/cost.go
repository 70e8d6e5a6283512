package worker

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/price"
	"github.com/mimoq/mimoq/internal/records"
)

// costOf is what usage cost on model, in pico-USD; 0 when the price table
// does not know the model.
func (w *Worker) costOf(model string, u *job.Usage) int64 {
	if u == nil {
		return 0
	}
	pico, ok := w.cfg.Prices.CostPicoUSD(model, price.Usage{PromptTokens: u.PromptTokens, CachedTokens: u.CachedTokens,
		CompletionTokens: u.CompletionTokens})
	if !ok {
		return 0
	}
	return pico
}

// spend counts an answer's cost: in the model's per-minute counters (stats:
// cost in the last hour) and, for a batch job, in the batch's spend, which
// Finish added to in the step that stored the success (f); a batch whose
// spend reached its maximum cost is canceled (budget_exhausted): its jobs
// not started never run.
func (w *Worker) spend(ctx context.Context, d records.Delivery, model string, pico int64, f records.Finished, log zerolog.Logger) {
	if pico <= 0 {
		return
	}
	w.counts.addCost(model, pico)
	total, maxPico := f.SpendPico, f.MaxPico
	if d.BatchID == "" || f.BatchEnded || maxPico <= 0 || total < maxPico {
		return
	}
	first, n, err := w.records.CancelForBudget(ctx, d.BatchID, time.Now())
	switch {
	case err != nil:
		log.Error().Err(err).Msg("cancel the batch whose budget is spent")
	case first:
		log.Warn().Float64("spent_usd", job.PicoToUSD(total)).Float64("max_cost_usd", job.PicoToUSD(maxPico)).
			Int("canceled", n).Msg("batch budget exhausted; its jobs not started are canceled")
	}
}
