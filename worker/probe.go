package worker

import (
	"context"
	"time"
)

// DefaultLaneProbeInterval is Config.LaneProbeInterval's default
// (MIMOQ_LANE_PROBE_INTERVAL).
const DefaultLaneProbeInterval = 5 * time.Minute

func (w *Worker) probeLoop(ctx context.Context) { <-ctx.Done() }
