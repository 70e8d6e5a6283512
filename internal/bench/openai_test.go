package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/files"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/openaiapi"
	"github.com/mimoq/mimoq/internal/server"
	"github.com/mimoq/mimoq/worker"
)

const benchToken = "tok-bench-0123456789"

// serveOpenAI starts the HTTP API with the OpenAI-compatible routes on the
// world's Redis and returns its base URL (…/openai/v1).
func (w *world) serveOpenAI() string {
	w.b.Helper()
	api, err := openaiapi.New(openaiapi.Config{Client: w.client, Redis: w.rdb, Files: files.New(w.rdb, time.Hour, 0)}, nil)
	if err != nil {
		w.b.Fatal(err)
	}
	s, err := server.New(server.Config{Tokens: auth.NewTokens(benchToken), Client: w.client, Redis: w.rdb,
		Routes: api.Routes(), SpoolDir: w.b.TempDir()})
	if err != nil {
		w.b.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	w.b.Cleanup(ts.Close)
	return ts.URL + openaiapi.Prefix
}

// paced sends one request every period for d, each with send, and returns
// every latency.
func paced(b *testing.B, period, d time.Duration, send func() error) []time.Duration {
	b.Helper()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
		errs = make(chan error, 1)
	)
	tick := time.NewTicker(period)
	defer tick.Stop()
	for range int(d / period) {
		<-tick.C
		wg.Go(func() {
			start := time.Now()
			if err := send(); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			mu.Lock()
			lat = append(lat, time.Since(start))
			mu.Unlock()
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return lat
}

func postChat(hc *http.Client, url, token string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s/chat/completions: %s", url, resp.Status)
	}
	return nil
}

// BenchmarkOpenAIGatewayOverhead: POST /chat/completions at 50 requests/s
// through mimoq (the HTTP API, Redis, a worker, the mock) against the same
// requests sent to the mock directly; the added latency is the difference of
// the percentiles. Both runs share the process and its two cores.
func BenchmarkOpenAIGatewayOverhead(b *testing.B) {
	const rate, seconds = 50, 10
	w := newWorld(b, mockapi.Config{})
	w.startWorker(0, 50, worker.Backoff{})
	url := w.serveOpenAI()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	body := []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"ping"}],"max_tokens":16}`)
	period := time.Second / rate
	for range b.N {
		direct := paced(b, period, seconds*time.Second, func() error { return postChat(hc, w.mockTS.URL+"/v1", w.key, body) })
		via := paced(b, period, seconds*time.Second, func() error { return postChat(hc, url, benchToken, body) })
		dp50, dp99 := percentile(direct, 0.50), percentile(direct, 0.99)
		vp50, vp99 := percentile(via, 0.50), percentile(via, 0.99)
		b.ReportMetric(float64(vp50-dp50)/1e6, "added_p50_ms")
		b.ReportMetric(float64(vp99-dp99)/1e6, "added_p99_ms")
		record(figure{"POST /openai/v1/chat/completions at 50/s", "added latency p50 / p99",
			ms(vp50-dp50) + " / " + ms(vp99-dp99),
			fmt.Sprintf("direct to the mock: p50 %s, p99 %s; through mimoq: p50 %s, p99 %s", ms(dp50), ms(dp99), ms(vp50), ms(vp99)),
			"", "target p50 ≤ 15 ms, p99 ≤ 50 ms: submit, pickup by the worker, the call, the record, the notice"})
	}
}

// upload sends path to POST /files as the SDKs do (multipart, file then
// purpose) and returns the file ID.
func upload(hc *http.Client, url string, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", "bench.jsonl")
		if err == nil {
			_, err = io.Copy(fw, f)
		}
		if err == nil {
			err = mw.WriteField("purpose", "batch")
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequest(http.MethodPost, url+"/files", pr)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var out struct{ ID string }
	if err := doJSON(hc, req, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

func doJSON(hc *http.Client, req *http.Request, v any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

func createBatch(hc *http.Client, url, fileID string) (string, int, error) {
	body, _ := json.Marshal(map[string]string{"input_file_id": fileID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	req, err := http.NewRequest(http.MethodPost, url+"/batches", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Content-Type", "application/json")
	var out struct {
		ID            string
		Status        string
		RequestCounts struct{ Total int } `json:"request_counts"`
	}
	if err := doJSON(hc, req, &out); err != nil {
		return "", 0, err
	}
	if out.Status != "in_progress" {
		return "", 0, fmt.Errorf("batch %s is %s", out.ID, out.Status)
	}
	return out.ID, out.RequestCounts.Total, nil
}

// BenchmarkOpenAIUploadAndCreate: a 50,000-line file uploaded to POST /files
// and made a batch by POST /batches (validated and enqueued from Redis)
// against SubmitBatch of the same file from disk, as `mimoq batch submit`
// does; three interleaved pairs on an emptied Redis, the median ratio
// reported. Also Redis's memory per uploaded MB.
func BenchmarkOpenAIUploadAndCreate(b *testing.B) {
	const n, pairs = 50000, 3
	w := newWorld(b, mockapi.Config{})
	url := w.serveOpenAI()
	f := batchFile(b, n, "mimo-v2.6-flash")
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(st.Size()) / 1e6
	hc := &http.Client{}
	ctx := context.Background()
	for range b.N {
		var rates, bases, ratios, perMB []float64
		for range pairs {
			if err := w.rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			batch, err := w.client.SubmitBatch(ctx, f, enqueue.BatchOptions{Source: "bench.jsonl"})
			if err != nil || batch.Total != n {
				b.Fatalf("submit: %v", err)
			}
			base := float64(n) / time.Since(start).Seconds()
			if err := w.rdb.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			before := w.usedMemory()
			start = time.Now()
			fileID, err := upload(hc, url, f.Name())
			if err != nil {
				b.Fatal(err)
			}
			stored := w.usedMemory()
			_, total, err := createBatch(hc, url, fileID)
			if err != nil || total != n {
				b.Fatalf("create: %d lines, %v", total, err)
			}
			rate := float64(n) / time.Since(start).Seconds()
			rates, bases = append(rates, rate), append(bases, base)
			ratios = append(ratios, rate/base)
			perMB = append(perMB, float64(stored-before)/mb)
		}
		i := medianIndex(ratios)
		b.ReportMetric(rates[i], "lines/s")
		b.ReportMetric(bases[i], "submit_lines/s")
		b.ReportMetric(ratios[i], "ratio")
		b.ReportMetric(perMB[i], "redis_B/uploaded_MB")
		record(figure{"OpenAI route: upload + create, 50,000-line file", "lines/s (upload, validate, enqueue)",
			fmt.Sprintf("%.0f", rates[i]), fmt.Sprintf("%.0f (SubmitBatch from disk, as mimoq batch submit)", bases[i]),
			fmt.Sprintf("%.2f×", ratios[i]), fmt.Sprintf("target ≥ 0.8×; median of %d interleaved pairs, ratios %s", pairs, list(ratios))})
		record(figure{"OpenAI route: upload + create, 50,000-line file", "Redis memory per uploaded MB (the stored file)",
			fmt.Sprintf("%.2f MB", perMB[i]/1e6), "", "", fmt.Sprintf("file of %.1f MB in chunks just under 1 MiB (a 1 MiB chunk measured 1.36 MB per MB: the allocator rounds it up to 1.25 MiB), kept MIMOQ_RESULT_TTL", mb)})
	}
}
