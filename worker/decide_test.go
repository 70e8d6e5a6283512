package worker

import (
	"testing"
	"time"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/records"
)

var testPolicy = Policy{
	MaxAttempts: 3, MaxInterrupts: 2, ShortWait: 2 * time.Second, CallBudget: time.Minute,
	Backoff: Backoff{Base: time.Second, Max: 10 * time.Second, Rand: func() float64 { return 0 }},
}

func TestDecideStart(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		b    records.Begun
		want Action
	}{
		{"record missing: drop, never call", records.Begun{Verdict: records.Missing}, Action{Kind: ActDrop, Reason: "no_record"}},
		{"final: settle, never call", records.Begun{Verdict: records.Final, State: job.StateDead},
			Action{Kind: ActSettle, Reason: "dead"}},
		{"not due: wait for the due time", records.Begun{Verdict: records.NotYet, DueAt: due},
			Action{Kind: ActWait, At: due, Reason: "not_due"}},
		{"runnable: call", records.Begun{Verdict: records.Run}, Action{Kind: ActCall}},
		{"interrupted, within the budget: call", records.Begun{Verdict: records.Run, Interrupted: true, Interrupts: 2},
			Action{Kind: ActCall}},
		{"interrupted once too often: dead, exhausted", records.Begun{Verdict: records.Run, Interrupted: true, Interrupts: 3},
			Action{Kind: ActDeadLetter, Class: job.ClassExhausted, Reason: "interrupted"}},
		{"many interrupts long ago, not this time: call", records.Begun{Verdict: records.Run, Interrupts: 9},
			Action{Kind: ActCall}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideStart(tc.b, testPolicy); got != tc.want {
				t.Errorf("decideStart = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecideCall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		left, leftAtStart time.Duration
		want              ActionKind
	}{
		{"no deadline", -1, -1, ActCall},
		{"room for the call and its outcome", time.Hour, 24 * time.Hour, ActCall},
		{"exactly the budget", time.Minute, 24 * time.Hour, ActCall},
		{"the wait ate into it: put back, a new delivery has its full time", time.Minute - time.Millisecond, 30 * time.Minute, ActPutBack},
		{"no time left", 0, 30 * time.Minute, ActPutBack},
		{"a delivery too short from the start: call all the same", 10 * time.Second, 20 * time.Second, ActCall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideCall(tc.left, tc.leftAtStart, testPolicy); got.Kind != tc.want {
				t.Errorf("decideCall(%s, %s) = %+v, want %v", tc.left, tc.leftAtStart, got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	retryable := func(r apiclient.Reason, status int, after time.Duration) apiclient.Classification {
		return apiclient.Classification{Class: apiclient.ClassRetryable, Reason: r, StatusCode: status, RetryAfter: after}
	}
	terminal := func(r apiclient.Reason, status int, pause bool) apiclient.Classification {
		return apiclient.Classification{Class: apiclient.ClassTerminal, Reason: r, StatusCode: status, PauseLane: pause}
	}
	for _, tc := range []struct {
		name    string
		c       apiclient.Classification
		success bool
		n       int
		want    Action
	}{
		{"2xx: succeed", apiclient.Classification{}, true, 1, Action{Kind: ActSucceed, Counted: true, Reason: "success"}},
		{"our own context ended: put back, no attempt", apiclient.Classification{Reason: apiclient.ReasonCanceled}, false, 2,
			Action{Kind: ActPutBack, Reason: "interrupted"}},
		{"5xx, budget left: retry after the backoff", retryable(apiclient.ReasonServerError, 503, 0), false, 1,
			Action{Kind: ActRetry, At: now.Add(time.Second), Counted: true, Reason: "server_error"}},
		{"5xx, second attempt: the backoff doubles", retryable(apiclient.ReasonServerError, 502, 0), false, 2,
			Action{Kind: ActRetry, At: now.Add(2 * time.Second), Counted: true, Reason: "server_error"}},
		{"5xx, last attempt: dead, exhausted", retryable(apiclient.ReasonServerError, 500, 0), false, 3,
			Action{Kind: ActDeadLetter, Class: job.ClassExhausted, Counted: true, Reason: "server_error"}},
		{"connection reset: retry", retryable(apiclient.ReasonConnection, 0, 0), false, 1,
			Action{Kind: ActRetry, At: now.Add(time.Second), Counted: true, Reason: "connection"}},
		{"429 with Retry-After: retry no sooner, cool the lane for as long", retryable(apiclient.ReasonRateLimited, 429, 30*time.Second), false, 1,
			Action{Kind: ActRetry, At: now.Add(30 * time.Second), Counted: true, Reason: "rate_limited", Cooldown: 30 * time.Second, Throttled: true, RetryAfter: 30 * time.Second}},
		{"429 without Retry-After: the backoff for both", retryable(apiclient.ReasonRateLimited, 429, 0), false, 2,
			Action{Kind: ActRetry, At: now.Add(2 * time.Second), Counted: true, Reason: "rate_limited", Cooldown: 2 * time.Second, Throttled: true}},
		{"429 on the last attempt: dead, and the lane still cools", retryable(apiclient.ReasonRateLimited, 429, 5*time.Second), false, 3,
			Action{Kind: ActDeadLetter, Class: job.ClassExhausted, Counted: true, Reason: "rate_limited", Cooldown: 5 * time.Second, Throttled: true, RetryAfter: 5 * time.Second}},
		{"400: dead at once", terminal(apiclient.ReasonBadRequest, 400, false), false, 1,
			Action{Kind: ActDeadLetter, Class: job.ClassTerminal, Counted: true, Reason: "bad_request"}},
		{"401: dead, and the lane pauses", terminal(apiclient.ReasonAuthentication, 401, true), false, 1,
			Action{Kind: ActDeadLetter, Class: job.ClassTerminal, Counted: true, Reason: "authentication", PauseLane: true}},
		{"local validation: dead, no attempt spent", terminal(apiclient.ReasonValidation, 0, false), false, 1,
			Action{Kind: ActDeadLetter, Class: job.ClassTerminal, Reason: "validation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.c, tc.success, tc.n, testPolicy, now); got != tc.want {
				t.Errorf("decide = %+v\n          want %+v", got, tc.want)
			}
		})
	}
}

// TestTokensUsed (review hole 7): a 2xx without usage keeps its token
// reservation; it does not hand it all back.
func TestTokensUsed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		u        *job.Usage
		reserved int64
		want     int64
	}{
		{"usage reported", &job.Usage{TotalTokens: 42}, 100, 42},
		{"usage above the estimate", &job.Usage{TotalTokens: 500}, 100, 500},
		{"a failure: no usage", nil, 100, 100},
		{"a 2xx without usage", &job.Usage{}, 100, 100},
	} {
		if got := tokensUsed(tc.u, tc.reserved); got != tc.want {
			t.Errorf("%s: tokensUsed = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestDecodePayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    taskPayload
		wantErr bool
	}{
		{in: `{"job_id":"J","batch_id":"B","custom_id":"c\"1","queue":"batch","model":"m"}`,
			want: taskPayload{Payload: job.Payload{JobID: "J", BatchID: "B", CustomID: `c"1`, Queue: "batch", Model: "m"}}},
		{in: `{"job_id":"J","queue":"interactive","model":"m","body":{"model":"m","messages":[]},"submitted_at":"2026-01-01T00:00:00Z"}`,
			want: taskPayload{Payload: job.Payload{JobID: "J", Queue: "interactive", Model: "m"}, Body: []byte(`{"model":"m","messages":[]}`)}},
		{in: ` { "job_id" : "J\u00e9" } `, want: taskPayload{Payload: job.Payload{JobID: "Jé"}}},
		{in: `{"queue":"batch"}`, wantErr: true},
		{in: `{"job_id":7}`, wantErr: true},
		{in: `not json`, wantErr: true},
		{in: `{"job_id":"J"`, wantErr: true},
		{in: `["job_id"]`, wantErr: true},
	} {
		got, err := decodePayload([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("decodePayload(%s): error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (got.Payload != tc.want.Payload || string(got.Body) != string(tc.want.Body)) {
			t.Errorf("decodePayload(%s) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
