package worker

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler serves /healthz (the process is alive), /readyz (it consumes
// jobs, is not shutting down and reaches Redis) and Prometheus /metrics.
func (w *Worker) HTTPHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		select {
		case <-w.ready:
		default:
			http.Error(rw, "not started", http.StatusServiceUnavailable)
			return
		}
		if w.drain.Err() != nil {
			http.Error(rw, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := w.cfg.Redis.Ping(ctx).Err(); err != nil {
			http.Error(rw, "redis unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = rw.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

// healthGauges are /readyz and a Redis ping as metrics, read at scrape
// time, for alerts: mimoq_worker_ready and mimoq_redis_up.
func (w *Worker) healthGauges() []prometheus.Collector {
	ping := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return w.cfg.Redis.Ping(ctx).Err() == nil
	}
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mimoq", Name: "worker_ready",
			Help: "1 when this worker consumes jobs, is not shutting down and reaches Redis (as /readyz)."},
			func() float64 {
				select {
				case <-w.ready:
				default:
					return 0
				}
				return b(w.drain.Err() == nil && ping())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "mimoq", Name: "redis_up",
			Help: "1 when Redis answered a ping at scrape time."}, func() float64 { return b(ping()) }),
	}
}
