package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

// BenchmarkAdaptiveRate: the fleet's limit is set five times too high
// (3,000 RPM) for an API that really allows 600 RPM (a sliding 60-s window)
// and answers 429 without Retry-After, as MiMo documents none. Adaptive
// rate should find the real limit: within 2 minutes at least 90 % of 600
// RPM used, fewer than 2 % of all calls answered 429 (issue 12).
func BenchmarkAdaptiveRate(b *testing.B) {
	const (
		model      = "mimo-v2.6-flash"
		configured = 3000
		real       = 600
		run        = 2 * time.Minute
	)
	for range b.N {
		w := newWorld(b, mockapi.Config{RPM: real, OmitRetryAfter: true, Latency: 50 * time.Millisecond})
		rdb := w.countedClient(70, nil)
		wk, err := worker.New(worker.Config{
			Redis: rdb, BaseURL: w.mockTS.URL + "/v1", APIKey: w.key, ResultTTL: time.Hour, Concurrency: 50,
			Limit: worker.Limit{RPM: configured, TPM: -1}, // defaults otherwise: 5 attempts, backoff 1 s … 60 s
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = wk.Run(ctx) }()
		<-wk.Ready()

		batch, err := w.client.SubmitBatch(context.Background(), batchFile(b, 1600, model), enqueue.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		type sample struct {
			at              time.Duration
			total, ok, r429 int64
		}
		start := time.Now()
		take := func() sample {
			st := w.mock.Stats()
			return sample{time.Since(start), st.TotalRequests, st.ByStatus["200"], st.ByStatus["429"]}
		}
		var samples []sample
		for _, at := range []time.Duration{0, run / 2, run * 3 / 4, run} {
			time.Sleep(time.Until(start.Add(at)))
			samples = append(samples, take())
		}
		st, err := lane.NewLanes(w.rdb, nil, lane.WithLimits(worker.Limit{RPM: configured, TPM: -1}, nil)).
			State(context.Background(), model)
		if err != nil {
			b.Fatal(err)
		}
		final, _ := w.client.GetBatch(context.Background(), batch.ID)
		cancel()
		<-done

		s0, s60, s90, s120 := samples[0], samples[1], samples[2], samples[3]
		rpm := func(a, c sample) float64 { return float64(c.ok-a.ok) / (c.at - a.at).Minutes() }
		share429 := float64(s120.r429-s0.r429) / float64(max(s120.total-s0.total, 1))
		b.ReportMetric(rpm(s90, s120)/real*100, "use_last30s_%")
		b.ReportMetric(share429*100, "429_%")
		const name = "adaptive rate: 3,000 RPM set, the API allows 600 (no Retry-After)"
		record(figure{name, "use of the real limit, 60–120 s / 90–120 s", fmt.Sprintf("%.0f %% / %.0f %% (%.0f / %.0f RPM)",
			rpm(s60, s120)/real*100, rpm(s90, s120)/real*100, rpm(s60, s120), rpm(s90, s120)),
			"", "", "target ≥ 90 % within 2 min"})
		record(figure{name, "calls answered 429 in the first 2 min", fmt.Sprintf("%.2f %% (%d of %d)", share429*100,
			s120.r429-s0.r429, s120.total-s0.total), "", "", "target < 2 %"})
		eff := st.EffectiveRPM
		if eff == 0 {
			eff = configured
		}
		record(figure{name, "effective rate at 2 min; jobs dead (exhausted by 429s)", fmt.Sprintf("%d RPM; %d dead of %d answered",
			eff, final.Dead, final.Succeeded+final.Dead), "", "", ""})
	}
}
