package worker

import (
	"context"
	"sync"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/ops"
)

// servedPairs remembers the (requested, served) model pairs this process
// has warned about: one warning per pair per process, however many jobs.
type servedPairs struct {
	mu   sync.Mutex
	seen map[[2]string]bool
}

// first reports whether the pair is new to this process.
func (p *servedPairs) first(requested, served string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = make(map[[2]string]bool)
	}
	k := [2]string{requested, served}
	if p.seen[k] {
		return false
	}
	p.seen[k] = true
	return true
}

// servedBy records that a job for requested was answered by served: a
// fleet-wide count per pair (mimoq stats), a metric, and one warning per
// pair per process. An API that forwards a retired name to its successor
// bills the successor's price, which the operator should know.
func (w *Worker) servedBy(ctx context.Context, requested, served string, log zerolog.Logger) {
	w.metrics.served.WithLabelValues(requested, served).Inc()
	if err := ops.CountServed(ctx, w.cfg.Redis, requested, served); err != nil {
		log.Warn().Err(err).Msg("count served model")
	}
	if w.served.first(requested, served) {
		log.Warn().Str("requested_model", requested).Str("served_model", served).
			Msg("the API answered with another model than the one requested")
	}
}
