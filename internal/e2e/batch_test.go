package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// writeBatch writes n request lines for model to a file and returns its path.
func writeBatch(t *testing.T, n int, model string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "batch.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"line %d"}],"max_tokens":32}}`+"\n", i, model, i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the mimoq binary to completion with the fleet's environment and
// returns stdout, stderr and the exit code.
func (f *fleet) run(args ...string) (string, string, int) {
	f.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, f.env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestBatchRoundTrip submits a 10,000-line file with the real binary, lets
// a worker run it against the mock, and checks the results file: complete,
// in input order, each custom_id once. Resubmitting the same file with the
// same ID enqueues nothing twice.
func TestBatchRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "1000000", "--tpm", "0", "--seed", "3")
	f.mock.Configure(t, map[string]any{"rate_500": 0.05, "rate_reset": 0.02})
	const n = 10000
	path := writeBatch(t, n, "mimo-v2.6-flash")
	out, stderr, code := f.run("batch", "submit", path, "--id", "round-trip", "--json")
	if code != 0 {
		t.Fatalf("batch submit exited %d: %s", code, stderr)
	}
	var b enqueue.Batch
	if err := json.Unmarshal([]byte(out), &b); err != nil || b.ID != "round-trip" || b.Total != n {
		t.Fatalf("batch submit printed %q (%v); want the record of round-trip with %d requests", out, err, n)
	}
	f.startWorker("MIMOQ_CONCURRENCY=100", "MIMOQ_RPM=1000000", "MIMOQ_TPM=0")
	// A resubmit while it runs: same file, same ID.
	if _, stderr, code := f.run("batch", "submit", path, "--id", "round-trip"); code != 0 {
		t.Fatalf("resubmit exited %d: %s", code, stderr)
	}
	out, stderr, code = f.run("batch", "status", "round-trip", "--watch", "--json")
	if code != 0 {
		t.Fatalf("batch status --watch exited %d: %s", code, stderr)
	}
	// With 7 % of calls failing and 5 attempts, a job dies with odds of
	// about 2 in a million: possible, so a dead line is accepted when it is
	// exhausted after its 5 attempts, and never otherwise.
	if err := json.Unmarshal([]byte(out), &b); err != nil || b.State != enqueue.BatchDone || b.Succeeded+b.Dead != n || b.Pending != 0 {
		t.Fatalf("final batch %q (%v); want done with all %d final", out, err, n)
	}
	if b.Usage.TotalTokens == 0 {
		t.Error("batch usage is zero")
	}
	res := filepath.Join(t.TempDir(), "results.jsonl")
	errs := filepath.Join(t.TempDir(), "errors.jsonl")
	if _, stderr, code := f.run("batch", "results", "round-trip", "-o", res, "--errors", errs); code != 0 {
		t.Fatalf("batch results exited %d: %s", code, stderr)
	}
	lines := readLines(t, res)
	if len(lines) != n {
		t.Fatalf("results hold %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		var r enqueue.ResultLine
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("results line %d: %v", i+1, err)
		}
		if r.CustomID != fmt.Sprintf("req-%d", i) {
			t.Fatalf("results line %d is %q: not in input order", i+1, r.CustomID)
		}
		if r.Error != nil {
			if r.Error.Class != "exhausted" || r.Error.Attempts != 5 {
				t.Fatalf("results line %d failed other than by exhausting its attempts: %s", i+1, l)
			}
			continue
		}
		if r.Response == nil || r.Response.StatusCode != 200 || len(r.Response.Body) == 0 {
			t.Fatalf("results line %d: %s", i+1, l)
		}
	}
	if e := readLines(t, errs); len(e) != b.Dead {
		t.Errorf("errors file holds %d lines, %d jobs are dead", len(e), b.Dead)
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if st.Duplicates != 0 {
		t.Errorf("the mock answered %d jobs twice", st.Duplicates)
	}
	if st.JobsSeen != n {
		t.Errorf("the mock saw %d jobs, want %d (no job twice, none missing)", st.JobsSeen, n)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimRight(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestBatchInvalidFiles checks that a file with any bad line is refused
// whole: exit status 2, FILE:LINE: reason, and nothing enqueued.
func TestBatchInvalidFiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	good := `{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"malformed line", []string{good, `{"custom_id":"b","body":{"model":`}, []string{":2: invalid JSON"}},
		{"duplicate custom_id", []string{good, good}, []string{`:2: custom_id "a" is already used on line 1`}},
		{"unknown model", []string{strings.Replace(good, "mimo-v2.6-flash", "gpt-4o", 1)}, []string{`:1: body: model "gpt-4o" is not one of`}},
		{"empty file", nil, []string{"the file holds no requests"}},
		{"missing custom_id", []string{`{"body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`}, []string{":1: custom_id is missing"}},
		{"unknown envelope field", []string{strings.Replace(good, `"body"`, `"bdy"`, 1)}, []string{`:1: unknown field "bdy"`}},
		{"body not an object", []string{`{"custom_id":"a","body":[1,2]}`}, []string{":1: body: "}},
		{"many bad lines", repeat(`nope`, 25), []string{":1: invalid JSON", ":20: invalid JSON", "5 more invalid lines", "25 invalid lines; nothing was enqueued"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.jsonl")
			content := strings.Join(tt.lines, "\n")
			if len(tt.lines) > 0 {
				content += "\n"
			}
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, stderr, code := f.run("batch", "submit", path)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr: %s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	keys, err := f.rdb.Keys(context.Background(), "asynq:{*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("invalid files enqueued something: %v", keys)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestBatchCancel cancels a batch mid-run: what had not started is canceled,
// what ran finished, every line ends final, and the results say which.
func TestBatchCancel(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "1000000", "--tpm", "0")
	const n = 300
	path := writeBatch(t, n, "mimo-v2.6-flash")
	if _, stderr, code := f.run("batch", "submit", path, "--id", "to-cancel"); code != 0 {
		t.Fatalf("submit exited %d: %s", code, stderr)
	}
	// A slow, rate-limited worker: 20 jobs a second.
	f.startWorker("MIMOQ_CONCURRENCY=10", "MIMOQ_RPM=1200", "MIMOQ_TPM=0")
	Eventually(t, time.Minute, "some jobs done", func() bool {
		b, err := f.client.GetBatch(context.Background(), "to-cancel")
		return err == nil && b.Succeeded >= 20
	})
	out, stderr, code := f.run("batch", "cancel", "to-cancel")
	if code != 0 {
		t.Fatalf("cancel exited %d: %s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := f.client.WaitBatch(ctx, "to-cancel")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != enqueue.BatchCanceled || b.Canceled == 0 || b.Succeeded == 0 || b.Succeeded+b.Canceled+b.Dead != n {
		t.Fatalf("after cancel (%s): %+v; want canceled with every line final", strings.TrimSpace(out), b)
	}
	var canceled, succeeded int
	err = f.client.Results(ctx, "to-cancel", false, func(l *enqueue.ResultLine) error {
		switch {
		case l.Error != nil && l.Error.Code == "canceled":
			canceled++
		case l.Response != nil && l.Response.StatusCode == 200:
			succeeded++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if canceled != b.Canceled || succeeded != b.Succeeded {
		t.Errorf("results: %d canceled, %d succeeded; record says %d, %d", canceled, succeeded, b.Canceled, b.Succeeded)
	}
	var st mockStats
	f.mock.Stats(t, &st)
	if int(st.JobsSeen) != b.Succeeded {
		t.Errorf("the mock saw %d jobs, %d succeeded: a canceled job reached the API", st.JobsSeen, b.Succeeded)
	}
}
