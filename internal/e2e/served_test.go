package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
)

// TestServedModelRecorded: the API answers a name with another model (as
// MiMo forwarded retired names to their successors). The job record and
// the result line say which model served, stats counts the pair, and the
// worker warns once per pair, not once per job.
func TestServedModelRecorded(t *testing.T) {
	t.Parallel()
	const alias = "mimo-alias"
	f := setup(t, "--forward", alias+"="+apiclient.ModelFlash)
	f.env = append(f.env, "MIMOQ_MODELS="+testModels+","+alias)
	wk := f.startWorker()
	f.submitBatchFile(writeLines(t, batchLine("a1", alias, "x"), batchLine("a2", alias, "y"),
		batchLine("a3", alias, "z"), batchLine("f", apiclient.ModelFlash, "w")), "served")
	_, jobs := f.waitBatchFinal("served", 30*time.Second)
	for _, j := range jobs {
		want := ""
		if j.Model == alias {
			want = apiclient.ModelFlash
		}
		if j.State != job.StateSucceeded || j.ServedModel != want {
			t.Errorf("job %s (%s): %s, served_model %q, want %q", j.CustomID, j.Model, j.State, j.ServedModel, want)
		}
	}
	out, stderr, code := f.run("job", "get", jobs[0].ID, "--json")
	if code != 0 || !strings.Contains(out, `"served_model":"`+apiclient.ModelFlash+`"`) {
		t.Errorf("job get --json: %d %s %s", code, out, stderr)
	}
	res, _, _ := f.run("batch", "results", "served")
	for _, l := range Lines(res) {
		var rl job.ResultLine
		if err := json.Unmarshal([]byte(l), &rl); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: apiclient.ModelFlash, false: ""}[rl.CustomID != "f"]; rl.ServedModel != want {
			t.Errorf("result line %s: served_model %q, want %q", rl.CustomID, rl.ServedModel, want)
		}
	}
	out, _, _ = f.run("stats", "--json")
	var all struct {
		ServedModels []struct {
			Requested, Served string
			Count             int64
		} `json:"served_models"`
	}
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	if len(all.ServedModels) != 1 || all.ServedModels[0].Requested != alias || all.ServedModels[0].Served != apiclient.ModelFlash ||
		all.ServedModels[0].Count != 3 {
		t.Errorf("stats served_models: %+v", all.ServedModels)
	}
	if txt, _, _ := f.run("stats"); !strings.Contains(txt, alias+" → "+apiclient.ModelFlash+": 3") {
		t.Errorf("stats:\n%s", txt)
	}
	if n := strings.Count(wk.Output(), "the API answered with another model"); n != 1 {
		t.Errorf("%d warnings about the served model, want 1 per pair", n)
	}
}
