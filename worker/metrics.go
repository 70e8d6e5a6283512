package worker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus series.
type metrics struct {
	jobs        *prometheus.CounterVec   // final and intermediate outcomes
	latency     *prometheus.HistogramVec // one API attempt
	limiterWait *prometheus.HistogramVec // time spent waiting for a permit
	inflight    prometheus.Gauge
	laneState   *prometheus.GaugeVec
	laneLimit   *prometheus.GaugeVec // configured requests per minute
	dlqSize     prometheus.Gauge
	// dropped counts tasks of jobs without a record (expired after a
	// final state); repairs the reconciler's repairs by kind; and
	// sweepFailures archived tasks the sweeper could not move.
	dropped       prometheus.Counter
	repairs       *prometheus.CounterVec
	sweepFailures prometheus.Counter
	// expired counts jobs expired by the expiry pass, by kind (job: a
	// single job's deadline; batch: a batch's completion window).
	expired *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "attempts_total",
			Help: "API attempts by outcome (succeeded, retried, dead, requeued), failure class and model.",
		}, []string{"outcome", "class", "model"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mimoq", Name: "api_latency_seconds",
			Help:    "Duration of one API attempt, body included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"model", "status"}),
		limiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mimoq", Name: "limiter_wait_seconds",
			Help:    "Time a job waited for the fleet-wide rate limit before its call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"model"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "inflight_calls",
			Help: "API calls in flight in this worker process.",
		}),
		laneState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "lane_state",
			Help: "1 for the current state of each model's lane (running, cooling_down, paused).",
		}, []string{"model", "state"}),
		laneLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "lane_limit_rpm",
			Help: "Configured fleet-wide requests per minute of each model's lane (0 = unlimited).",
		}, []string{"model"}),
		dlqSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "dlq_size",
			Help: "Dead letters in mimoq's dead-letter store.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "tasks_dropped_total",
			Help: "Tasks dropped without a call because their job has no record (it expired after a final state).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "reconciler_repairs_total",
			Help: "Repairs by the reconciler: task_recreated, dead_letter_written, cancel_completed, expiry_completed, lost.",
		}, []string{"kind"}),
		sweepFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "sweep_failures_total",
			Help: "Tasks archived by asynq that the sweeper could not move into the dead-letter store (retried next sweep).",
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "jobs_expired_total",
			Help: "Jobs that expired before they started, by kind: job (its own deadline) or batch (its batch's completion window).",
		}, []string{"kind"}),
	}
	// Every kind from the start, at 0, so that rate() and increase() see
	// the first repair.
	for _, kind := range []string{"task_recreated", "dead_letter_written", "cancel_completed", "expiry_completed", "lost"} {
		m.repairs.WithLabelValues(kind)
	}
	for _, kind := range []string{"job", "batch"} {
		m.expired.WithLabelValues(kind)
		m.repairs.WithLabelValues(kind)
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.latency, m.limiterWait, m.inflight, m.laneState, m.laneLimit, m.dlqSize, m.dropped, m.repairs,
			m.sweepFailures, m.expired)
	}
	return m
}
