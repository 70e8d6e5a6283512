package enqueue

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestPayloadAppendJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	tests := []Payload{
		{JobID: "01J", BatchID: "b-1", CustomID: `odd "id" <&> é`, Queue: "batch", Model: "mimo-v2-flash",
			Body:        json.RawMessage(`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled"}}`),
			SubmittedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)},
		{JobID: "01K", Queue: "interactive", Model: "m", Body: json.RawMessage(`{}`), SubmittedAt: time.Unix(0, 0)},
	}
	for _, p := range tests {
		var got, want Payload
		if err := json.Unmarshal(p.appendJSON(nil), &got); err != nil {
			t.Fatalf("appendJSON wrote invalid JSON: %v: %s", err, p.appendJSON(nil))
		}
		std, _ := json.Marshal(p)
		_ = json.Unmarshal(std, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("appendJSON decodes to %+v, json.Marshal to %+v", got, want)
		}
	}
}
