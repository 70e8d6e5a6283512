package worker

import (
	"math"

	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/records"
)

// newFeeder returns the fair feeder of the lanes this worker consumes
// (internal/fair): every worker runs one, and each lane is fed by one of
// them at a time.
func (w *Worker) newFeeder() (*fair.Feeder, error) {
	return fair.New(fair.Config{Redis: w.cfg.Redis, Records: w.records, ID: w.cfg.ID + "-" + records.NewLease(),
		Lanes: w.fairLanes, Depth: w.feedDepth, Logger: w.log.With().Str("component", "fair").Logger()})
}

// fairLanes is every queue of every model this worker consumes.
func (w *Worker) fairLanes() []fair.Lane {
	models := w.modelList()
	lanes := make([]fair.Lane, 0, len(models)*len(w.cfg.Queues))
	for _, m := range models {
		for q := range w.cfg.Queues {
			lanes = append(lanes, fair.Lane{Queue: q, Model: m})
		}
	}
	return lanes
}

// feedDepth is how many jobs the feeder keeps queued in a lane of model:
// half a second of its request limit, at least 8 (the feeder's pause
// between rounds is 50 ms), or 1,000 without a limit (a worker fleet
// without a limit drains thousands a second). A batch arriving waits
// behind those and behind the jobs the workers' asynq servers have taken
// already (up to MIMOQ_CONCURRENCY per server, waiting for their permit).
func (w *Worker) feedDepth(model string) int {
	l, ok := w.cfg.ModelLimits[model]
	if !ok {
		l = w.cfg.Limit
	}
	if l.RPM <= 0 {
		return 1000
	}
	return max(8, int(math.Ceil(float64(l.RPM)/60*0.5)))
}
