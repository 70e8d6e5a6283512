package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/worker"
)

func (a *app) workerCmd() *cobra.Command {
	var queues string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: consume queues, call the API, retry, dead-letter",
		Long: `Run a worker: consume the queues, call the API at the fleet-wide rate limit, retry
what is retryable with backoff and dead-letter the rest. Serves /healthz, /readyz and
Prometheus /metrics on MIMOQ_HTTP_ADDR (default 127.0.0.1:9464). Stops gracefully on
SIGTERM or SIGINT within MIMOQ_SHUTDOWN_TIMEOUT.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			weights, err := parseWeights(queues)
			if err != nil {
				return err
			}
			return a.runWorker(cmd.Context(), weights)
		},
	}
	cmd.Flags().StringVar(&queues, "queues", "interactive=4,batch=1", "queues to consume, with their weights")
	return cmd
}

func (a *app) runWorker(ctx context.Context, weights map[string]int) error {
	d, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	e := d.env
	if e.APIKey == "" {
		return usagef("MIMO_API_KEY is required by mimoq worker")
	}
	log := e.logger(a.stderr)
	redis.SetLogger(redisLog{l: log})
	api, err := apiclient.New(apiclient.Options{
		BaseURL: e.BaseURL, APIKey: e.APIKey.Value(), RequestTimeout: e.RequestTimeout, Models: d.models,
	})
	if err != nil {
		return usagef("%v", err)
	}
	defer api.CloseIdleConnections()

	prices, err := e.prices()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	w, err := worker.New(worker.Config{
		Redis: d.rdb, API: api, Models: d.models, Limit: e.defaultLimit(), ModelLimits: d.limits,
		Queues: weights, Concurrency: e.Concurrency, MaxAttempts: e.MaxAttempts,
		Backoff:   worker.Backoff{Base: e.BackoffBase, Max: e.BackoffMax},
		ResultTTL: e.ResultTTL, RequestTimeout: e.RequestTimeout, ShutdownTimeout: e.ShutdownTimeout,
		CatalogInterval: offIfZero(e.CatalogInterval), LaneProbeInterval: offIfZero(e.LaneProbeInterval),
		QuotaSuspectAfter: offIfZero(e.QuotaSuspectAfter), Prices: prices,
		Logger: log, Registerer: reg, Webhooks: e.webhookConfig(),
	})
	if err != nil {
		return err
	}
	reg.MustRegister(worker.NewQueueCollector(d.rdb, w.AsynqQueues()))

	addr := e.httpAddr("127.0.0.1:9464")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on MIMOQ_HTTP_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: w.HTTPHandler(reg), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server")
		}
	}()
	log.Info().Str("http_addr", ln.Addr().String()).Msg("serving /healthz, /readyz and /metrics")
	err = w.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return err
}

// parseWeights reads "interactive=4,batch=1".
func parseWeights(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(w)
		if !ok || name == "" || err != nil || n < 1 {
			return nil, usagef("invalid --queues entry %q: want NAME=WEIGHT with a weight of at least 1", part)
		}
		out[name] = n
	}
	if len(out) == 0 {
		return nil, usagef("--queues names no queue")
	}
	return out, nil
}
