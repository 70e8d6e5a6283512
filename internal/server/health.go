package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// healthz is GET /healthz: the process is alive. No token needed.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is GET /readyz: Redis answers and the server is not shutting
// down. No token needed.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Err() != nil {
		writeError(w, r, http.StatusServiceUnavailable, "service_unavailable", "The server is shutting down.", "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.Redis.Ping(ctx).Err(); err != nil {
		s.log.Warn().Err(err).Msg("readyz: redis ping failed")
		writeError(w, r, http.StatusServiceUnavailable, "service_unavailable", "The queue store (Redis) is unreachable.", "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// metrics are the server's request counters.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, rdb redis.UniversalClient) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mimoq_http_requests_total",
			Help: "HTTP API requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mimoq_http_request_duration_seconds",
			Help:    "HTTP API request duration by route (long polls and uploads included).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
	}
	// mimoq_redis_up, as the workers have it: Redis answered a ping at
	// scrape time (for the alert on an unreachable Redis).
	redisUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mimoq_redis_up",
		Help: "1 when Redis answered a ping at scrape time."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if rdb.Ping(ctx).Err() != nil {
			return 0
		}
		return 1
	})
	for _, c := range []prometheus.Collector{m.requests, m.duration, redisUp} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, itoa(int64(status))).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}
