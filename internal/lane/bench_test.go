package lane

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mimoq/mimoq/internal/redistest"
)

// BenchmarkGateWait measures how many permits per second Gates can hand out
// when the limit is far away (the cost of the Gate itself), and the limiter
// round trips each permit costs, with 25 waiters per core per process.
func BenchmarkGateWait(b *testing.B) {
	for _, bc := range []struct {
		name  string
		procs int
		limit Limit
	}{
		{"unlimited", 1, Limit{RPM: -1, TPM: -1}},
		{"rpm", 1, Limit{RPM: 6_000_000}},
		{"rpm+tpm", 1, Limit{RPM: 6_000_000, TPM: 6_000_000_000}},
		{"3procs/rpm+tpm", 3, Limit{RPM: 6_000_000, TPM: 6_000_000_000}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := redistest.New(b)
			gates := make([]*Gate, bc.procs)
			for i := range gates {
				g, err := NewGate(GateConfig{Redis: s.Client(), Default: bc.limit})
				if err != nil {
					b.Fatal(err)
				}
				defer g.Close()
				gates[i] = g
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(25)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				g := gates[int(next.Add(1))%len(gates)]
				for pb.Next() {
					p, err := g.Wait(ctx, "mimo-v2.6-flash", 1000)
					if err != nil {
						b.Error(err)
						return
					}
					p.Done(800)
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			var calls int64
			for _, g := range gates {
				calls += g.Stats().LimiterCalls
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "permits/s")
			b.ReportMetric(float64(calls)/float64(b.N), "limiter_calls/op")
		})
	}
}

// BenchmarkGateFleetPrecision is the precision scenario with the default
// configuration: three processes with 50 waiters each share a limit of
// 10 requests/s for 10 s. It reports the share of the limit used and the
// most permits granted in any 1-s window (which must not exceed 10).
func BenchmarkGateFleetPrecision(b *testing.B) {
	const (
		perSecond = 10
		run       = 10 * time.Second
	)
	for range b.N {
		s := redistest.New(b)
		var gates []*Gate
		for range 3 {
			g, err := NewGate(GateConfig{Redis: s.Client(), Default: Limit{RPM: perSecond * 60}})
			if err != nil {
				b.Fatal(err)
			}
			gates = append(gates, g)
		}
		grants := make(chan time.Time, 1000)
		ctx, cancel := context.WithTimeout(context.Background(), run+time.Second)
		var wg sync.WaitGroup
		for _, g := range gates {
			for range 50 {
				wg.Go(func() {
					for {
						p, err := g.Wait(ctx, "mimo-v2.6-pro", 0)
						if err != nil {
							return
						}
						grants <- time.Now()
						p.Done(0)
					}
				})
			}
		}
		wg.Wait()
		cancel()
		close(grants)
		var times []time.Time
		for t := range grants {
			times = append(times, t)
		}
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		var calls int64
		for _, g := range gates {
			calls += g.Stats().LimiterCalls
			g.Close()
		}
		inRun := 0
		for _, t := range times {
			if t.Sub(times[0]) < run {
				inRun++
			}
		}
		b.ReportMetric(100*float64(inRun)/(perSecond*run.Seconds()), "utilisation_%")
		b.ReportMetric(float64(maxInWindow(times, time.Second)), "max_per_1s")
		b.ReportMetric(float64(calls)/float64(len(times)), "limiter_calls/permit")
	}
}
