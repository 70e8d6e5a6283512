package server

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/mimoq/mimoq/enqueue"
)

func TestParseWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"30s", 30 * time.Second, true},
		{"1m30s", 90 * time.Second, true},
		{"30", 30 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"0", 0, true},
		{"1e300", 1e6 * time.Second, true}, // capped later at MaxWait; no overflow
		{"-1s", 0, false},
		{"-3", 0, false},
		{"NaN", 0, false},
		{"soon", 0, false},
	} {
		got, err := parseWait(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseWait(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBatchFileMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  enqueue.BatchFileError
		want string
	}{
		{enqueue.BatchFileError{Count: 1, Errors: []enqueue.LineError{{Line: 3, Reason: "custom_id is required"}}},
			"The batch file has 1 invalid line; nothing was enqueued: 3: custom_id is required."},
		{enqueue.BatchFileError{Count: 2, Errors: []enqueue.LineError{{Line: 3, Reason: "a"}, {Line: 9, Reason: "b"}}},
			"The batch file has 2 invalid lines; nothing was enqueued: 3: a; 9: b."},
		{enqueue.BatchFileError{Count: 30, Errors: []enqueue.LineError{{Line: 1, Reason: "a"}, {Line: 2, Reason: "b"}}},
			"The batch file has 30 invalid lines; nothing was enqueued; the first 2: 1: a; 2: b."},
		{enqueue.BatchFileError{Errors: []enqueue.LineError{{Reason: "the file holds no requests"}}},
			"The batch file is invalid; nothing was enqueued: the file holds no requests."},
	} {
		if got := batchFileMessage(&tc.err); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{
		1 << 10: "1 KiB", 8 << 20: "8 MiB", 256 << 20: "256 MiB", 1 << 30: "1 GiB", 1500: "1500 bytes",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestParseEnvelopeDeadline: a deadline is a positive duration; anything
// else is refused naming the field.
func TestParseEnvelopeDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw   string
		want  time.Duration
		param string // refused, naming this field
	}{
		{`{"body":{},"deadline":"30s"}`, 30 * time.Second, ""},
		{`{"body":{},"deadline":"1h30m"}`, 90 * time.Minute, ""},
		{`{"body":{}}`, 0, ""},
		{`{"body":{},"deadline":"0s"}`, 0, "deadline"},
		{`{"body":{},"deadline":"-5s"}`, 0, "deadline"},
		{`{"body":{},"deadline":"soon"}`, 0, "deadline"},
		{`{"body":{},"deadline":30}`, 0, "deadline"},
	}
	for _, tt := range tests {
		env, ferr := parseEnvelope([]byte(tt.raw))
		switch {
		case tt.param != "" && (ferr == nil || ferr.param != tt.param):
			t.Errorf("%s: %+v, want refused naming %s", tt.raw, ferr, tt.param)
		case tt.param == "" && ferr != nil:
			t.Errorf("%s: refused: %s", tt.raw, ferr.message)
		case tt.param == "" && env.Deadline != tt.want:
			t.Errorf("%s: deadline %s, want %s", tt.raw, env.Deadline, tt.want)
		}
	}
}

// FuzzParseEnvelope: any input is either refused with a message or gives
// a body that is a JSON object taken byte-for-byte from the input.
func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"body":{"model":"m","messages":[]}}`, `{"body":{},"queue":"batch","idempotency_key":"k"}`,
		`{"body":null}`, `{"body":"x"}`, `{"queue":1}`, `{"model":"m"}`, `[]`, `null`, ``, `{"body":{}`,
		`{"body":{} , "body": {"a":1}}`, "{\"body\":\t{ }}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		env, ferr := parseEnvelope(raw)
		if ferr != nil {
			if ferr.message == "" {
				t.Fatalf("refusal without a message for %q", raw)
			}
			return
		}
		if len(env.Body) == 0 || env.Body[0] != '{' || !bytes.Contains(raw, env.Body) {
			t.Fatalf("body %q from %q", env.Body, raw)
		}
	})
}

// FuzzParseRequeue: any input is refused with a message or selects by IDs
// or by All, never both and never neither.
func FuzzParseRequeue(f *testing.F) {
	for _, s := range []string{
		`{"ids":["a","b"]}`, `{"all":true,"filter":{"model":"m","status":429,"since":"24h"}}`,
		`{"all":true,"dry_run":true}`, `{}`, `{"ids":[]}`, `{"all":true,"filter":{"x":1}}`, `{"ids":[1]}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, ferr := parseRequeue(raw, now)
		if ferr != nil {
			if ferr.message == "" {
				t.Fatalf("refusal without a message for %q", raw)
			}
			return
		}
		if req.sel.All == (len(req.sel.IDs) > 0) {
			t.Fatalf("selection %+v from %q", req.sel, raw)
		}
		if slices.Contains(req.sel.IDs, "") {
			t.Fatalf("empty id from %q", raw)
		}
	})
}
