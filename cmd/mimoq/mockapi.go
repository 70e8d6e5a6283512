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

	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/internal/mockapi"
)

type mockapiFlags struct {
	addr, key, shape, models, limits string
	rpm                              int
	tpm                              int64
	latency, jitter, hangFor         time.Duration
	seed                             int64
	rates                            map[string]*float64

	retired, blockTerms []string
	forward             map[string]string
	burst402            int
	burst402For         time.Duration
	noRetryAfter        bool
	quotaTokens         int64
	quotaWindow         time.Duration
	promptCache         bool
}

// mockRateFlags are the fault-rate flags, in the order of Config's fields.
var mockRateFlags = []struct{ name, help string }{
	{"rate-429", "share of requests answered with an injected 429"},
	{"rate-500", "share answered 500 internal_error"},
	{"rate-502", "share answered 502 with a proxy's HTML page"},
	{"rate-503", "share answered 503 service_unavailable"},
	{"rate-reset", "share whose connection is reset without an answer"},
	{"rate-truncate", "share answered 200 with a truncated body"},
	{"rate-hang", "share never answered (until the client gives up or --hang-for)"},
	{"rate-421", "share answered 421 by the content filter"},
	{"rate-451", "share answered 451 with a proxy's HTML page"},
}

func (a *app) mockapiCmd() *cobra.Command {
	f := &mockapiFlags{rates: map[string]*float64{}}
	cmd := &cobra.Command{
		Use:   "mockapi",
		Short: "Run a faithful stand-in for the MiMo API, with fault injection",
		Long: `mockapi serves the MiMo chat-completions API (POST /v1/chat/completions, GET
/v1/models) for demos, tests and benchmarks: the same authentication, validation,
error shapes and per-model rate limits as the real API, today's models (mimo-v2.6-*)
with retired names answered 400 "Unsupported model", deterministic replies with
cached_tokens for repeated prompt prefixes, and injected faults (429, 5xx, 421, a
proxy's HTML 451, reset connections, truncated bodies, hangs) at the rates you choose.

Modes follow what the real API has been seen to do: --burst-402 / --burst-402-for
answer a burst of spurious 402 "Insufficient account funds" and then recover;
--no-retry-after sends 429s without Retry-After; --quota-tokens answers 429 "quota
of Token Plan has been exhausted" once a window's tokens are used, until the window
ends; --forward OLD=NEW answers a request for OLD as NEW, naming NEW in "model";
--block-terms makes the content filter answer 421.

The API key comes from --key or MIMO_API_KEY. Statistics are at GET /mock/stats, one
job's calls at GET /mock/jobs/{id}; POST /mock/reset clears them and PUT /mock/config
changes the key, limits, faults and modes of the running mock.`,
		Example: `  mimoq mockapi --key test-key --rpm 100
  mimoq mockapi --addr 127.0.0.1:0 --key k --rate-429 0.1 --rate-503 0.05 --error-shape mixed
  mimoq mockapi --key k --burst-402 20 --no-retry-after --quota-tokens 200000 --quota-window 1m
  mimoq mockapi --key k --forward mimo-v2.5=mimo-v2.6-flash --models mimo-v2.6-flash,mimo-v2.5-tts`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runMockapi(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8090", "listen address (port 0 picks a free one)")
	fl.StringVar(&f.key, "key", "", "API key to accept (default $MIMO_API_KEY)")
	fl.IntVar(&f.rpm, "rpm", mockapi.DefaultRPM, "requests per minute per model (0 = unlimited)")
	fl.Int64Var(&f.tpm, "tpm", mockapi.DefaultTPM, "tokens per minute per model (0 = unlimited)")
	fl.StringVar(&f.limits, "model-limits", "", "per-model rpm:tpm overrides, e.g. mimo-v2.6-pro=50:2000000,mimo-v2.6-flash=200:0 (0 = unlimited)")
	fl.StringVar(&f.models, "models", "", "models to serve with output token limits, e.g. mimo-v2.6-pro=131072,mimo-v2.5-tts (default the three mimo-v2.6 text models)")
	fl.DurationVar(&f.latency, "latency", 0, "time to answer a successful request")
	fl.DurationVar(&f.jitter, "jitter", 0, "spread latency uniformly over latency ± jitter")
	fl.Int64Var(&f.seed, "seed", 0, "seed of fault injection")
	for _, r := range mockRateFlags {
		f.rates[r.name] = fl.Float64(r.name, 0, r.help+" (0 to 1)")
	}
	fl.DurationVar(&f.hangFor, "hang-for", mockapi.DefaultHangFor, "how long a hung request hangs at most")
	fl.StringVar(&f.shape, "error-shape", string(mockapi.ShapeSeed), "error body shape: seed, mimo or mixed")
	fl.StringSliceVar(&f.retired, "retired", mockapi.DefaultRetired(), "model names (or prefixes ending in *) answered 400 \"Unsupported model\"")
	fl.StringToStringVar(&f.forward, "forward", nil, "answer a request for OLD as the served model NEW, naming NEW in \"model\" (OLD=NEW, repeatable)")
	fl.StringSliceVar(&f.blockTerms, "block-terms", nil, "words the content filter answers with 421 (comma list, case ignored)")
	fl.IntVar(&f.burst402, "burst-402", 0, "answer the first N valid requests 402 \"Insufficient account funds\", then recover")
	fl.DurationVar(&f.burst402For, "burst-402-for", 0, "answer every valid request 402 for this long after start, then recover")
	fl.BoolVar(&f.noRetryAfter, "no-retry-after", false, "send 429s without Retry-After and retry-after-ms, as the real API documents none")
	fl.Int64Var(&f.quotaTokens, "quota-tokens", 0, "Token Plan quota: tokens per --quota-window, then 429 until the window ends (0 = none)")
	fl.DurationVar(&f.quotaWindow, "quota-window", mockapi.DefaultQuotaWindow, "how long a --quota-tokens quota lasts")
	fl.BoolVar(&f.promptCache, "prompt-cache", true, "report a prompt prefix seen before as cached_tokens")
	return cmd
}

// config turns the flags into a mockapi.Config; a bad value is a usage error
// naming its flag.
func (f *mockapiFlags) config(key string) (mockapi.Config, error) {
	cfg := mockapi.Config{Key: key, Latency: f.latency, Jitter: f.jitter, Seed: f.seed, HangFor: f.hangFor,
		Retired: f.retired, Forward: f.forward, BlockedTerms: f.blockTerms, OmitRetryAfter: f.noRetryAfter,
		Burst402: f.burst402, Burst402For: f.burst402For, QuotaTokens: f.quotaTokens, QuotaWindow: f.quotaWindow,
		DisablePromptCache: !f.promptCache}
	if key == "" {
		return cfg, usagef("no API key: set --key or MIMO_API_KEY")
	}
	var err error
	if cfg.RPM, err = flagLimit("--rpm", int64(f.rpm)); err != nil {
		return cfg, err
	}
	tpm, err := flagLimit("--tpm", f.tpm)
	if err != nil {
		return cfg, err
	}
	cfg.TPM = int64(tpm)
	for name, d := range map[string]time.Duration{"--latency": f.latency, "--jitter": f.jitter, "--hang-for": f.hangFor, "--burst-402-for": f.burst402For} {
		if d < 0 {
			return cfg, usagef("invalid %s=%s: must not be negative", name, d)
		}
	}
	if f.hangFor == 0 {
		return cfg, usagef("invalid --hang-for=0s: must be positive")
	}
	if f.quotaWindow <= 0 {
		return cfg, usagef("invalid --quota-window=%s: must be positive", f.quotaWindow)
	}
	for name, n := range map[string]int64{"--burst-402": int64(f.burst402), "--quota-tokens": f.quotaTokens} {
		if n < 0 {
			return cfg, usagef("invalid %s=%d: must not be negative", name, n)
		}
	}
	if cfg.Retired == nil {
		cfg.Retired = []string{} // --retired= retires nothing, not the defaults
	}
	sum := 0.0
	for _, r := range mockRateFlags {
		v := *f.rates[r.name]
		if !(v >= 0 && v <= 1) {
			return cfg, usagef("invalid --%s=%v: must be between 0 and 1", r.name, v)
		}
		sum += v
	}
	if sum > 1+1e-9 {
		return cfg, usagef("invalid fault rates: --rate-* flags add up to %v, must be at most 1", sum)
	}
	cfg.Rate429, cfg.Rate500, cfg.Rate502, cfg.Rate503 = *f.rates["rate-429"], *f.rates["rate-500"], *f.rates["rate-502"], *f.rates["rate-503"]
	cfg.RateReset, cfg.RateTruncate, cfg.RateHang = *f.rates["rate-reset"], *f.rates["rate-truncate"], *f.rates["rate-hang"]
	cfg.Rate421, cfg.Rate451 = *f.rates["rate-421"], *f.rates["rate-451"]
	if cfg.ErrorShape, err = mockapi.ParseErrorShape(f.shape); err != nil {
		return cfg, usagef("invalid --error-shape=%q: want seed, mimo or mixed", f.shape)
	}
	if f.models != "" {
		if cfg.Models, err = parseMockModels(f.models); err != nil {
			return cfg, err
		}
	}
	if f.limits != "" {
		models := cfg.Models
		if models == nil {
			models = mockapi.DefaultModels()
		}
		if cfg.Limits, err = parseMockLimits(f.limits, models); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// flagLimit maps a user-facing limit (0 = unlimited) to Config's (Unlimited).
func flagLimit(name string, v int64) (int, error) {
	switch {
	case v < 0:
		return 0, usagef("invalid %s=%d: must not be negative (0 = unlimited)", name, v)
	case v == 0:
		return mockapi.Unlimited, nil
	}
	return int(v), nil
}

// parseMockModels reads "name[=limit],…"; a name alone takes its default limit
// when it is a current MiMo model (text or speech), else 0 (unchecked).
func parseMockModels(list string) (map[string]int, error) {
	defaults := mockapi.DefaultModels()
	for m, limit := range mockapi.SpeechModels() {
		defaults[m] = limit
	}
	out := map[string]int{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		name, limit, hasLimit := strings.Cut(item, "=")
		if name == "" {
			return nil, usagef("invalid --models=%q: empty model name", list)
		}
		n := defaults[name]
		if hasLimit {
			v, err := strconv.Atoi(limit)
			if err != nil || v < 0 {
				return nil, usagef("invalid --models=%q: output token limit of %s must be a whole number ≥ 0", list, name)
			}
			n = v
		}
		out[name] = n
	}
	return out, nil
}

// parseMockLimits reads "model=rpm:tpm,…" as MIMOQ_MODEL_LIMITS does (0 = unlimited).
func parseMockLimits(list string, models map[string]int) (map[string]mockapi.Limit, error) {
	out := map[string]mockapi.Limit{}
	for _, item := range strings.Split(list, ",") {
		name, spec, ok := strings.Cut(strings.TrimSpace(item), "=")
		rpmS, tpmS, ok2 := strings.Cut(spec, ":")
		rpm, err1 := strconv.ParseInt(rpmS, 10, 64)
		tpm, err2 := strconv.ParseInt(tpmS, 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil || rpm < 0 || tpm < 0 {
			return nil, usagef("invalid --model-limits=%q: want model=rpm:tpm,… (0 = unlimited)", list)
		}
		if _, known := models[name]; !known {
			return nil, usagef("invalid --model-limits=%q: %s is not a served model", list, name)
		}
		r, _ := flagLimit("", rpm)
		t, _ := flagLimit("", tpm)
		out[name] = mockapi.Limit{RPM: r, TPM: int64(t)}
	}
	return out, nil
}

func (a *app) runMockapi(ctx context.Context, f *mockapiFlags) error {
	e, err := loadEnv()
	if err != nil {
		return err
	}
	key := f.key
	if key == "" {
		key = e.APIKey.Value()
	}
	cfg, err := f.config(key)
	if err != nil {
		return err
	}
	log := e.logger(a.stderr).With().Str("component", "mockapi").Logger()
	cfg.Logger = log
	mock, err := mockapi.New(cfg)
	if err != nil {
		return &usageError{err: err}
	}
	defer mock.Close()

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("mockapi listen on %s: %w", f.addr, err)
	}
	srv := &http.Server{Handler: mock, ReadHeaderTimeout: 10 * time.Second}
	url := "http://" + ln.Addr().String() + "/v1"
	log.Info().Str("addr", ln.Addr().String()).Str("base_url", url).
		Int("rpm", f.rpm).Int64("tpm", f.tpm).Str("error_shape", f.shape).
		Int("burst_402", f.burst402).Bool("retry_after", !f.noRetryAfter).Int64("quota_tokens", f.quotaTokens).
		Int("forwards", len(f.forward)).Msg("mockapi listening")
	fmt.Fprintf(a.stderr, "mockapi listening on %s\n", url)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("mockapi serve: %w", err)
	case <-ctx.Done():
	}
	// Hung requests would hold Shutdown for their whole HangFor: release them.
	mock.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mockapi serve: %w", err)
	}
	log.Info().Msg("mockapi stopped")
	return nil
}
