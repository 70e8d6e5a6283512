package worker

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus series.
type metrics struct {
	jobs        *prometheus.CounterVec   // final and intermediate outcomes
	latency     *prometheus.HistogramVec // one API attempt
	limiterWait *prometheus.HistogramVec // time spent waiting for a permit
	inflight    prometheus.Gauge
	laneState   *prometheus.GaugeVec
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
	// catalogReads counts readings of GET /models by result (ok, failed).
	catalogReads *prometheus.CounterVec
	// probes counts lane probes by model and result (succeeded, failed).
	probes *prometheus.CounterVec
	// rpmConfigured and rpmEffective are each lane's configured request
	// limit and the one the fleet keeps after 429s (adaptive rate);
	// quotaSuspect is 1 for a lane with only 429s for a long time.
	rpmConfigured, rpmEffective, quotaSuspect *prometheus.GaugeVec
	// served counts answers by another model than the one requested.
	served *prometheus.CounterVec
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
		catalogReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "catalog_reads_total",
			Help: "Readings of the API's GET /models (the live model catalog) by result: ok, failed.",
		}, []string{"result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "lane_probes_total",
			Help: "Probes of lanes paused by an error (one job let through), by model and result: succeeded, failed.",
		}, []string{"model", "result"}),
		rpmConfigured: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "lane_rpm_configured",
			Help: "Configured fleet-wide requests per minute of each model's lane (-1: unlimited).",
		}, []string{"model"}),
		rpmEffective: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "lane_rpm_effective",
			Help: "Requests per minute the fleet keeps for each model: the configured limit, lowered after 429s while within it (adaptive rate).",
		}, []string{"model"}),
		quotaSuspect: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "mimoq", Name: "lane_quota_suspect",
			Help: "1 when a lane has had only 429s for longer than MIMOQ_QUOTA_SUSPECT_AFTER: a used-up quota more likely than a rate limit.",
		}, []string{"model"}),
		served: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mimoq", Name: "served_model_total",
			Help: "Answers whose model is not the one requested (a forwarded or aliased name), by requested and served model.",
		}, []string{"requested", "served"}),
	}
	// Every kind from the start, at 0, so that rate() and increase() see
	// the first one.
	for _, kind := range []string{"task_recreated", "dead_letter_written", "cancel_completed", "expiry_completed", "lost"} {
		m.repairs.WithLabelValues(kind)
	}
	for _, kind := range []string{"job", "batch"} {
		m.expired.WithLabelValues(kind)
	}
	if reg != nil {
		reg.MustRegister(m.jobs, m.latency, m.limiterWait, m.inflight, m.laneState, m.dlqSize, m.dropped, m.repairs,
			m.sweepFailures, m.expired, m.catalogReads, m.probes, m.rpmConfigured, m.rpmEffective, m.quotaSuspect, m.served)
	}
	return m
}
