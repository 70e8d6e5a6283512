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
