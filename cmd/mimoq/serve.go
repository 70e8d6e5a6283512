package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/openaiapi"
	"github.com/mimoq/mimoq/internal/server"
	"github.com/mimoq/mimoq/internal/webui"
)

type serveFlags struct {
	maxJobBytes, maxBatchBytes, maxFileBytes byteSize
	maxWait                                  time.Duration
}

func (a *app) serveCmd() *cobra.Command {
	f := &serveFlags{maxJobBytes: 8 << 20, maxBatchBytes: 256 << 20, maxFileBytes: files.DefaultMaxBytes}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API for producers and operators",
		Long: `Serve the HTTP API on MIMOQ_HTTP_ADDR (default 127.0.0.1:8080): submit jobs and batch
files, read and wait for results, list and requeue dead letters; and, under /openai/v1,
the OpenAI-compatible Files, Batches, Chat Completions and Models routes, for the
official OpenAI SDKs with only their base URL changed. Every route but
/healthz and /readyz takes "Authorization: Bearer <token>" with one of the tokens in
MIMOQ_API_TOKENS (comma-separated; required). Stops gracefully on SIGTERM or SIGINT.`,
		Example: `  MIMOQ_API_TOKENS=s3cret mimoq serve
  curl -H "Authorization: Bearer s3cret" -d '{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}}' http://127.0.0.1:8080/v1/jobs`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.Var(&f.maxJobBytes, "max-job-bytes", "largest body of POST /v1/jobs (e.g. 8MiB)")
	fl.Var(&f.maxBatchBytes, "max-batch-bytes", "largest batch file of POST /v1/batches (e.g. 256MiB)")
	fl.Var(&f.maxFileBytes, "max-file-bytes", "largest upload of POST /openai/v1/files (e.g. 200MB)")
	fl.DurationVar(&f.maxWait, "max-wait", 60*time.Second, "longest ?wait= of GET /v1/jobs/{id}")
	return cmd
}

func (a *app) runServe(ctx context.Context, f *serveFlags) error {
	if f.maxWait <= 0 {
		return usagef("invalid --max-wait=%s: must be positive", f.maxWait)
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	tokens := make([]string, 0, len(e.APITokens))
	for _, t := range e.APITokens {
		tokens = append(tokens, t.Value())
	}
	tok := auth.NewTokens(tokens...)
	if tok.Len() == 0 {
		return usagef("MIMOQ_API_TOKENS is required by mimoq serve: set one or more comma-separated bearer tokens (serving without authentication is not offered)")
	}
	d, err := a.open(ctx)
	if err != nil {
		return err
	}
	defer d.close()
	log := e.logger(a.stderr)
	ui, err := webui.New(webui.Config{Tokens: tok, Client: d.client, Ops: d.ops, DLQ: d.store,
		Lanes: d.lanes, Models: d.models.Names(), Redis: d.rdb,
		Logger: log.With().Str("component", "webui").Logger()})
	if err != nil {
		return err
	}

	oai, err := openaiapi.New(openaiapi.Config{Client: d.client, Redis: d.rdb, ResultTTL: e.ResultTTL,
		Files: files.New(d.rdb, e.ResultTTL, int64(f.maxFileBytes)), SyncTimeout: e.SyncTimeout}, ctx)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.Config{
		Tokens: tok, Client: d.client, Redis: d.rdb, DLQ: d.store, Ops: d.ops,
		Routes: oai.Routes(), UI: ui, Registry: reg, Logger: log.With().Str("component", "serve").Logger(),
		MaxJobBytes: int64(f.maxJobBytes), MaxBatchBytes: int64(f.maxBatchBytes), MaxWait: f.maxWait,
		ShutdownTimeout: e.ShutdownTimeout,
	})
	if err != nil {
		return &usageError{err: err}
	}

	addr := e.httpAddr("127.0.0.1:8080")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on MIMOQ_HTTP_ADDR %s: %w", addr, err)
	}
	url := "http://" + ln.Addr().String()
	log.Info().Str("addr", ln.Addr().String()).Int("tokens", tok.Len()).
		Int64("max_job_bytes", int64(f.maxJobBytes)).Int64("max_batch_bytes", int64(f.maxBatchBytes)).
		Str("max_wait", f.maxWait.String()).Msg("serve listening")
	// A plain line too, for scripts that wait for the server (as with mockapi).
	fmt.Fprintf(a.stderr, "serve listening on %s\n", url)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info().Msg("serve stopped")
	return nil
}

// byteSize is a flag holding a number of bytes: 1048576, 512KiB, 8MiB,
// 1GiB, or decimal 10MB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "bytes" }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

func parseByteSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive size: use bytes or a unit, e.g. 8MiB or 256MiB", s)
	}
	return n * mult, nil
}
