package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
	"github.com/mimoq/mimoq/internal/records"
)

// DefaultLaneProbeInterval is Config.LaneProbeInterval's default
// (MIMOQ_LANE_PROBE_INTERVAL).
const DefaultLaneProbeInterval = 5 * time.Minute

// Lane probes. A lane paused by an error (401, 402, 403, 451,
// model_not_served) would stay paused until an operator resumed it, though
// the cause is often gone by itself: a spurious 402 burst, a key fixed in
// the API's console, a model served again. Every LaneProbeInterval one
// worker of the fleet (lane.ClaimProbe) takes one queued job of the lane
// and calls the API with it, past the paused gate. Success stores the
// answer and resumes the lane; any failure puts the job back without
// counting an attempt, and the lane stays paused until the next probe. An
// operator's pause is never probed.

// probeTick is how often the probe loop looks for a due probe.
func (w *Worker) probeTick() time.Duration {
	return min(max(w.cfg.LaneProbeInterval/4, 200*time.Millisecond), 5*time.Second)
}

func (w *Worker) probeLoop(ctx context.Context) {
	t := time.NewTicker(w.probeTick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		models := w.modelList()
		states, err := w.lanes.List(ctx, models)
		if err != nil {
			continue
		}
		for _, s := range states {
			if s.Status != lane.StatusPaused || !s.Probed || !s.NextProbe.IsZero() {
				continue
			}
			won, err := w.lanes.ClaimProbe(ctx, s.Model, w.cfg.ID, w.cfg.LaneProbeInterval)
			if err != nil || !won {
				continue
			}
			w.probe(ctx, s.Model, s.Reason)
		}
	}
}

// probe lets one queued job of model through; see the comment above.
func (w *Worker) probe(ctx context.Context, model, pausedFor string) {
	log := w.log.With().Str("model", model).Str("paused_for", pausedFor).Logger()
	b, ok, err := w.probeJob(ctx, model)
	if err != nil {
		log.Warn().Err(err).Msg("lane probe: no job to probe with")
		return
	}
	if !ok {
		log.Info().Msg("lane probe: no queued job; the lane stays paused")
		return
	}
	log = log.With().Str("job_id", b.Delivery.JobID).Logger()
	ctx = log.WithContext(ctx)
	d, n := b.Delivery, b.Attempts+1
	req, err := apiclient.ParseRequest(b.Body)
	if err == nil {
		err = w.validate(req)
	}
	if err != nil {
		// Not this lane's problem: the job goes back to the normal path,
		// which dead-letters it, and the next probe takes another.
		_ = w.finish(ctx, d, records.Outcome{State: job.StateQueued})
		return
	}
	w.metrics.inflight.Inc()
	start := time.Now()
	resp, callErr := w.api.Do(ctx, req, w.callModels(),
		apiclient.WithHeader(HeaderJobID, d.JobID), apiclient.WithHeader(HeaderAttempt, strconv.Itoa(n)))
	elapsed := time.Since(start)
	w.metrics.inflight.Dec()

	if callErr == nil {
		w.metrics.probes.WithLabelValues(model, "succeeded").Inc()
		w.counts.add(model, ops.MinuteCounts{Calls: 1, Succeeded: 1})
		act := decide(apiclient.Classification{}, true, n, w.policy, time.Now())
		if err := w.carryOut(ctx, d, model, n, act, resp, nil, elapsed, start, log); err != nil {
			log.Warn().Err(err).Msg("lane probe: store the answer")
		}
		if _, err := w.lanes.Resume(ctx, model); err != nil {
			log.Error().Err(err).Msg("lane probe succeeded; resume lane")
			return
		}
		log.Warn().Msg("lane probe succeeded; lane resumed")
		return
	}
	w.metrics.probes.WithLabelValues(model, "failed").Inc()
	cl := apiclient.Classify(callErr)
	jerr := jobError(callErr, cl)
	entry := &job.Attempt{Attempt: n, Start: start.UTC(), DurationMs: elapsed.Milliseconds(), Reason: "probe",
		Worker: w.cfg.ID, StatusCode: jerr.StatusCode, ErrorCode: jerr.Code, Message: jerr.Message,
		RequestID: jerr.RequestID, Class: job.ClassNone}
	// Not counted: the lane's failure, not the job's.
	if err := w.finish(ctx, d, records.Outcome{State: job.StateQueued, Entry: entry}); err != nil {
		log.Warn().Err(err).Msg("lane probe: put the job back")
	}
	log.Warn().Int("status", jerr.StatusCode).Str("error_code", jerr.Code).
		Dur("next_probe_in", w.cfg.LaneProbeInterval).Msg("lane probe failed; lane stays paused")
}

// probeJob begins one queued job of model's lanes, interactive first, for a
// probe. It reports false when none can be run now.
func (w *Worker) probeJob(ctx context.Context, model string) (records.Begun, bool, error) {
	var errs []error
	for _, q := range job.Queues() {
		aq := job.AsynqQueue(q, model)
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
			w.insp.ListPendingTasks, w.insp.ListRetryTasks,
		} {
			tasks, err := list(aq, asynq.PageSize(20))
			if err != nil {
				if !errors.Is(err, asynq.ErrQueueNotFound) {
					errs = append(errs, err)
				}
				continue
			}
			for _, t := range tasks {
				p, err := decodePayload(t.Payload)
				if err != nil || p.Body != nil {
					continue
				}
				b, err := w.records.Begin(ctx, p.JobID, w.leases.next(), w.cfg.ID, time.Now())
				if err != nil {
					return records.Begun{}, false, err
				}
				if b.Verdict == records.Run {
					return b, true, nil
				}
			}
		}
	}
	if len(errs) > 0 {
		return records.Begun{}, false, fmt.Errorf("list tasks: %w", errors.Join(errs...))
	}
	return records.Begun{}, false, nil
}
