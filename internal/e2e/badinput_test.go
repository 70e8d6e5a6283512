package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

// TestBadInputBatchFiles feeds the real binary batch files that are wrong
// in one way each. Every one must be refused with exit status 2 and one
// clear message naming the file, the line and what is wrong, and nothing
// may be enqueued.
func TestBadInputBatchFiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	good := batchLine("ok-1", "mimo-v2.6-flash", "hello")
	longID := strings.Repeat("x", 10000)
	tests := []struct {
		name  string
		lines []string // nil: an empty file
		raw   []byte   // instead of lines
		flags []string
		want  []string
	}{
		{name: "empty file", want: []string{"in.jsonl: the file holds no requests"}},
		{name: "only blank lines", lines: []string{"", "   ", "\t"}, want: []string{"the file holds no requests"}},
		{name: "line over the size limit", lines: []string{good, batchLine("big", "mimo-v2.6-flash", strings.Repeat("a", 4096))},
			flags: []string{"--max-line-bytes", "2KiB"}, want: []string{"in.jsonl:2: line is longer than 2048 bytes"}},
		{name: "invalid UTF-8", raw: []byte(good + "\n" + `{"custom_id":"u","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"caf` + "\xe9" + `"}]}}` + "\n"),
			want: []string{"in.jsonl:2: line is not valid UTF-8"}},
		{name: "custom_id of 10,000 characters", lines: []string{batchLine(longID, "mimo-v2.6-flash", "x")},
			want: []string{"in.jsonl:1: custom_id is 10000 bytes long; at most 512 are allowed"}},
		{name: "body is a string", lines: []string{`{"custom_id":"a","body":"hello"}`}, want: []string{"in.jsonl:1: body: "}},
		{name: "body is an array", lines: []string{`{"custom_id":"a","body":[{"model":"mimo-v2.6-flash"}]}`}, want: []string{"in.jsonl:1: body: "}},
		{name: "line is not an object", lines: []string{good, `["custom_id","a"]`}, want: []string{"in.jsonl:2: the line is not a JSON object"}},
		{name: "unknown field in the envelope", lines: []string{strings.Replace(good, `"body"`, `"priority":1,"body"`, 1)},
			want: []string{`in.jsonl:1: unknown field "priority"`}},
		{name: "NUL bytes", raw: []byte("\x00\x00\x00\n"), want: []string{"in.jsonl:1: invalid JSON"}},
		{name: "two values on a line", lines: []string{good + " " + good}, want: []string{"in.jsonl:1: invalid JSON: more than one value"}},
		{name: "stream: true", lines: []string{strings.Replace(good, `"max_tokens":32`, `"max_tokens":32,"stream":true`, 1)},
			want: []string{"in.jsonl:1: body: ", "stream"}},
		{name: "weight 0", lines: []string{good}, flags: []string{"--weight", "0"},
			want: []string{"invalid --weight", "from 1 to 1000"}},
		{name: "weight not a number", lines: []string{good}, flags: []string{"--weight", "heavy"},
			want: []string{`invalid --weight: weight "heavy" must be a whole number from 1 to 1000`}},
		{name: "tenant with a space", lines: []string{good}, flags: []string{"--tenant", "acme corp"},
			want: []string{"invalid --tenant", "letters, digits"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.jsonl")
			data := tt.raw
			if data == nil && tt.lines != nil {
				data = []byte(strings.Join(tt.lines, "\n") + "\n")
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := f.run(append([]string{"batch", "submit", path}, tt.flags...)...)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stdout %q stderr %q", code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, tail(stderr, 2000))
				}
			}
			if strings.Contains(stderr, longID) {
				t.Error("the error echoes the whole 10,000-character custom_id")
			}
			if n := len(stderr); n > 4000 {
				t.Errorf("the error is %d bytes long; want a few clear lines", n)
			}
			if keys := f.queueKeys(); len(keys) != 0 {
				t.Fatalf("a refused file enqueued something: %v", keys)
			}
		})
	}
}

// TestBadInputLargeMessageAccepted submits a request whose message is 1 MiB
// of text. It is a legitimate request (long documents are what LLMs are fed)
// and well under the line limit, so it is accepted, run and answered.
func TestBadInputLargeMessageAccepted(t *testing.T) {
	t.Parallel()
	f := setup(t, "--rpm", "1000000", "--tpm", "0")
	big := strings.Repeat("All work and no play makes Jack a dull boy. ", (1<<20)/44+1)[:1<<20]
	path := writeLines(t, batchLine("big-1", "mimo-v2.6-flash", big), batchLine("small-1", "mimo-v2.6-flash", "hi"))
	f.submitBatchFile(path, "big")
	f.startWorker("MIMOQ_RPM=1000000", "MIMOQ_TPM=0")
	b, jobs := f.waitBatchFinal("big", 2*time.Minute)
	if b.Succeeded != 2 {
		t.Fatalf("batch %+v; want both requests succeeded", b)
	}
	var calls jobCalls
	f.mock.Calls(t, jobs[0].ID, &calls)
	if jobs[0].CustomID != "big-1" || len(calls.Calls) != 1 || calls.Calls[0].Status != 200 {
		t.Errorf("the 1 MiB request: job %+v, calls %+v", jobs[0], calls)
	}
	var res enqueue.ResultLine
	out, stderr, code := f.run("batch", "results", "big")
	if code != 0 {
		t.Fatalf("results exited %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &res); err != nil || res.CustomID != "big-1" || res.Response == nil || res.Response.StatusCode != 200 {
		t.Errorf("first result line: %v %+v", err, res)
	}
}

// TestBadInputEnvironment checks that bad settings stop a command at once
// with a message that names the variable: a bad duration is a usage error
// (exit status 2), a Redis that is not there a runtime error (exit status 1)
// within seconds, not a hang.
func TestBadInputEnvironment(t *testing.T) {
	t.Parallel()
	f := setup(t)
	path := writeLines(t, batchLine("a", "mimo-v2.6-flash", "x"))

	// A listener that accepts connections and never answers: the worst
	// kind of "nowhere".
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"bad duration", []string{"MIMOQ_BACKOFF_MAX=5 parsecs"}, []string{"worker"}, 2,
			[]string{"MIMOQ_BACKOFF_MAX", "5 parsecs"}},
		{"negative duration", []string{"MIMOQ_REQUEST_TIMEOUT=-1s"}, []string{"worker"}, 2, []string{"MIMOQ_REQUEST_TIMEOUT"}},
		{"backoff max below base", []string{"MIMOQ_BACKOFF_BASE=10s", "MIMOQ_BACKOFF_MAX=1s"}, []string{"batch", "submit", path}, 2,
			[]string{"MIMOQ_BACKOFF_MAX", "MIMOQ_BACKOFF_BASE"}},
		{"not a number", []string{"MIMOQ_CONCURRENCY=lots"}, []string{"worker"}, 2, []string{"MIMOQ_CONCURRENCY"}},
		{"Redis URL not a URL", []string{"MIMOQ_REDIS_URL=localhost:6379"}, []string{"batch", "submit", path}, 2, []string{"MIMOQ_REDIS_URL"}},
		{"Redis refuses", []string{"MIMOQ_REDIS_URL=redis://127.0.0.1:1/0"}, []string{"batch", "submit", path}, 1,
			[]string{"MIMOQ_REDIS_URL", "127.0.0.1:1"}},
		{"Redis refuses the worker", []string{"MIMOQ_REDIS_URL=redis://127.0.0.1:1/0"}, []string{"worker"}, 1, []string{"MIMOQ_REDIS_URL"}},
		{"Redis never answers", []string{"MIMOQ_REDIS_URL=redis://" + silent.Addr().String() + "/0"}, []string{"job", "get", "01J0000000000000000000000"}, 1,
			[]string{"MIMOQ_REDIS_URL", silent.Addr().String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			stdout, stderr, code := f.runEnv(tt.env, tt.args...)
			took := time.Since(start)
			if code != tt.code {
				t.Fatalf("exit status %d, want %d; stdout %q stderr %q", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
			if lines := Lines(strings.TrimSpace(stderr)); len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), stderr)
			}
			// "Within seconds": generous, for a loaded CI machine; a hang
			// would hit the harness's own timeout instead.
			if took > 30*time.Second {
				t.Errorf("took %s to fail", took)
			}
		})
	}
	if keys := f.queueKeys(); len(keys) != 0 {
		t.Errorf("bad settings enqueued something: %v", keys)
	}
}
