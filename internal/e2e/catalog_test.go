package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/catalog"
)

// catalogOn is the environment of a fleet with the live catalog on and the
// default model list (MIMOQ_MODELS unset).
var catalogOn = []string{"MIMOQ_CATALOG_INTERVAL=1s", "MIMOQ_MODELS="}

// modelsJSON is `mimoq models --json`.
type modelsJSON struct {
	Source    string    `json:"source"`
	URL       string    `json:"url"`
	FetchedAt time.Time `json:"fetched_at"`
	By        string    `json:"by"`
	Models    []struct {
		ID              string `json:"id"`
		MaxOutputTokens int    `json:"max_output_tokens"`
	} `json:"models"`
}

func (f *fleet) models() modelsJSON {
	f.t.Helper()
	out, stderr, code := f.run("models", "--json")
	if code != 0 {
		f.t.Fatalf("models --json exited %d: %s", code, stderr)
	}
	var m modelsJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		f.t.Fatalf("models --json: %v in %s", err, out)
	}
	return m
}

func (m modelsJSON) ids() []string {
	var ids []string
	for _, x := range m.Models {
		ids = append(ids, x.ID)
	}
	return ids
}

// TestLiveCatalog: with default settings, a worker reads GET /models and
// publishes it; `mimoq models` shows it with its source and time; submit
// (CLI and Go) accepts mimo-v2.6-flash and refuses a retired name naming
// what is available; a model retired at the API leaves the catalog at the
// next reading. Before any worker ran, the configured list is in use.
func TestLiveCatalog(t *testing.T) {
	t.Parallel()
	f := setup(t, "--latency", "10ms")
	f.env = append(f.env, catalogOn...)

	if m := f.models(); m.Source != catalog.SourceConfigured || !slices.Contains(m.ids(), apiclient.ModelFlash) {
		t.Fatalf("before any worker: %+v", m)
	}
	f.startWorker()
	m := f.models()
	if m.Source != catalog.SourceLive || m.URL != f.mock.URL+"/models" || m.By == "" ||
		time.Since(m.FetchedAt) > time.Minute {
		t.Fatalf("live catalog: %+v", m)
	}
	if got := strings.Join(m.ids(), ","); got != "mimo-v2.6-flash,mimo-v2.6-pro,mimo-v2.6-pro-ultraspeed" &&
		!sameSet(m.ids(), []string{apiclient.ModelFlash, apiclient.ModelPro, apiclient.ModelProUltraSpeed}) {
		t.Fatalf("live models %s", got)
	}
	for _, x := range m.Models {
		if x.MaxOutputTokens != apiclient.DefaultMaxOutputTokens {
			t.Errorf("model %s: max output tokens %d", x.ID, x.MaxOutputTokens)
		}
	}
	raw, err := f.rdb.Get(context.Background(), catalog.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, f.mock.Key) {
		t.Fatal("the published catalog holds the API key")
	}

	out, stderr, code := f.run("submit", "--model", apiclient.ModelFlash, "--prompt", "hi", "--wait")
	if code != 0 {
		t.Fatalf("submit %s exited %d: %s %s", apiclient.ModelFlash, code, out, stderr)
	}
	_, stderr, code = f.run("submit", "--model", "mimo-v2-flash", "--prompt", "hi")
	if code != 2 || !strings.Contains(stderr, "mimo-v2.6-flash") || !strings.Contains(stderr, "retired") {
		t.Fatalf("submit of a retired model: exit %d, %s", code, stderr)
	}
	// MIMOQ_MODELS lists the ghost model, the live catalog does not: the
	// live one wins while it is fresh.
	_, stderr, code = f.runEnv([]string{"MIMOQ_MODELS=" + testModels}, "submit", "--model", ghostModel, "--prompt", "hi")
	if code != 2 || !strings.Contains(stderr, "not one of") {
		t.Fatalf("submit of a model missing from the live catalog: exit %d, %s", code, stderr)
	}
	path := writeLines(t, batchLine("a", apiclient.ModelFlash, "x"), batchLine("b", "mimo-v2.5-pro", "y"))
	if _, stderr, code := f.run("batch", "submit", path); code != 2 || !strings.Contains(stderr, ":2:") {
		t.Fatalf("batch submit with a retired model: exit %d, %s", code, stderr)
	}
	// The Go producer reads the same catalog.
	_, err = f.client.Submit(context.Background(), []byte(`{"model":"`+ghostModel+`","messages":[{"role":"user","content":"x"}]}`))
	var ire *enqueue.InvalidRequestError
	if !errors.As(err, &ire) || !strings.Contains(err.Error(), apiclient.ModelFlash) {
		t.Fatalf("Go submit of a model missing from the live catalog: %v", err)
	}

	// Retired at the API: gone from the catalog at the next reading.
	f.mock.Configure(t, map[string]any{"retired_models": []string{apiclient.ModelProUltraSpeed}})
	Eventually(t, 15*time.Second, "ultraspeed leaves the catalog", func() bool {
		m := f.models()
		return m.Source == catalog.SourceLive && !slices.Contains(m.ids(), apiclient.ModelProUltraSpeed)
	})
	if out, _, _ := f.run("models"); !strings.Contains(out, "source: live") || strings.Contains(out, apiclient.ModelProUltraSpeed) {
		t.Fatalf("models:\n%s", out)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestModelRetiredMidBatchPausesLane: with default settings, a model the
// API retires while its jobs wait makes the first 400 re-read the catalog;
// the model is gone from it, so the lane pauses (model_not_served) and the
// jobs stay queued instead of dying one by one.
func TestModelRetiredMidBatchPausesLane(t *testing.T) {
	t.Parallel()
	f := setup(t, "--latency", "10ms")
	f.env = append(f.env, "MIMOQ_CATALOG_INTERVAL=1m", "MIMOQ_MODELS=", "MIMOQ_LANE_PROBE_INTERVAL=0")
	f.startWorker("MIMOQ_CONCURRENCY=2", "MIMOQ_RPM=120")
	const model = apiclient.ModelProUltraSpeed
	var lines []string
	for i := range 30 {
		lines = append(lines, batchLine(fmt.Sprintf("r%d", i), model, fmt.Sprintf("q %d", i)))
	}
	f.submitBatchFile(writeLines(t, lines...), "retired-mid-batch")
	Eventually(t, 20*time.Second, "a few lines answered", func() bool {
		b, err := f.client.GetBatch(context.Background(), "retired-mid-batch")
		return err == nil && b.Succeeded >= 3
	})
	f.mock.Configure(t, map[string]any{"retired_models": []string{model}})
	Eventually(t, 20*time.Second, "lane paused as model_not_served", func() bool {
		s := f.laneState(model)
		return s.Status == "paused" && strings.HasPrefix(s.Reason, "model_not_served")
	})
	var st mockStats
	f.mock.Stats(t, &st)
	if n := st.ByStatus["400"]; n < 1 || n > 3 {
		t.Errorf("the API answered %d calls 400; want the one (or the few in flight) before the pause", n)
	}
	time.Sleep(time.Second)
	b, err := f.client.GetBatch(context.Background(), "retired-mid-batch")
	if err != nil {
		t.Fatal(err)
	}
	if b.Dead != 0 || b.Succeeded+b.Pending != 30 || b.Pending == 0 {
		t.Fatalf("batch after the pause: %d succeeded, %d dead, %d pending; want none dead, the rest waiting",
			b.Succeeded, b.Dead, b.Pending)
	}
}

// TestRequeueSetModel: dead letters of a retired model are one command from
// a fix: `dlq requeue --all --model OLD --set-model NEW` rewrites their
// requests' model and they succeed. A --set-model the queue does not accept
// is refused, changing nothing.
func TestRequeueSetModel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// A configured list that still has a retired name (catalog off): its
	// jobs reach the API and die with 400 "Unsupported model".
	const old = "mimo-v2-flash"
	f.env = append(f.env, "MIMOQ_MODELS="+testModels+","+old)
	f.startWorker()
	lines := []string{
		`{"custom_id":"a","body":{"model":"` + old + `","messages":[{"role":"user","content":"x"}],"max_tokens":16,"thinking":{"type":"disabled"}}}`,
		batchLine("b", old, "y"), batchLine("c", apiclient.ModelFlash, "z"),
	}
	f.submitBatchFile(writeLines(t, lines...), "set-model")
	b, _ := f.waitBatchFinal("set-model", 30*time.Second)
	if b.Dead != 2 {
		t.Fatalf("batch: %d dead, want 2", b.Dead)
	}
	if _, stderr, code := f.run("dlq", "requeue", "--all", "--model", old, "--set-model", "no-such-model", "--yes"); code != 2 ||
		!strings.Contains(stderr, apiclient.ModelFlash) {
		t.Fatalf("requeue --set-model to an unknown model: exit %d, %s", code, stderr)
	}
	out, stderr, code := f.run("dlq", "requeue", "--all", "--model", old, "--set-model", apiclient.ModelFlash, "--yes")
	if code != 0 || !strings.Contains(out, "requeued 2") {
		t.Fatalf("requeue --set-model: exit %d, %s %s", code, out, stderr)
	}
	b, jobs := f.waitBatchFinal("set-model", 30*time.Second)
	if b.Succeeded != 3 || b.Dead != 0 {
		t.Fatalf("after the requeue: %d succeeded, %d dead", b.Succeeded, b.Dead)
	}
	for _, j := range jobs {
		if j.Model != apiclient.ModelFlash {
			t.Errorf("job %s has model %s", j.ID, j.Model)
		}
	}
	// The rest of the request is as it was: line a said thinking disabled,
	// so its answer has no reasoning, unlike line b's.
	res, _, _ := f.run("batch", "results", "set-model")
	for _, l := range Lines(res) {
		thinks := strings.Contains(l, "reasoning_content")
		if strings.Contains(l, `"custom_id":"a"`) && thinks || strings.Contains(l, `"custom_id":"b"`) && !thinks {
			t.Errorf("result line after the requeue lost a field of the request: %s", l)
		}
	}
}

// TestLiveCatalogBringsNewModels: a model the API lists but mimoq was not
// configured with (a speech model, or one released after the last
// upgrade) is accepted at submit time and run: the worker consumes its
// queues too, with no restart and no MIMOQ_MODELS change.
func TestLiveCatalogBringsNewModels(t *testing.T) {
	t.Parallel()
	const newModel = "mimo-v2.5-tts"
	f := setup(t, "--models", "mimo-v2.6-pro=131072,mimo-v2.6-flash=131072,"+newModel+"=8192")
	f.env = append(f.env, catalogOn...)
	f.startWorker()
	if m := f.models(); m.Source != catalog.SourceLive || !slices.Contains(m.ids(), newModel) {
		t.Fatalf("live catalog: %+v", m)
	}
	out, stderr, code := f.run("submit", "--model", newModel, "--prompt", "read this aloud", "--wait")
	if code != 0 {
		t.Fatalf("submit of a model only the live catalog lists: exit %d, %s %s", code, out, stderr)
	}
	// Limits of a model the configuration does not know are unchecked.
	body := `{"model":"` + newModel + `","messages":[{"role":"user","content":"x"}],"max_tokens":100000}`
	if _, err := f.client.Submit(context.Background(), []byte(body)); err != nil {
		t.Errorf("Go submit of a live-only model: %v", err)
	}
	if out, _, _ := f.run("lane", "list"); !strings.Contains(out, newModel) {
		t.Errorf("lane list does not show the live model's lane:\n%s", out)
	}
}
