package apiclient

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

const modelListBody = `{"object":"list","data":[
 {"id":"mimo-v2.6-pro","object":"model","created":1790000000,"owned_by":"xiaomi"},
 {"id":"mimo-v2.6-flash","object":"model","created":1790000000,"owned_by":"xiaomi"},
 {"id":"","object":"model"},
 {"id":"mimo-v2.5-tts","object":"model","created":"not a number","owned_by":"xiaomi"}]}`

func TestListModels(t *testing.T) {
	t.Parallel()
	var method, path string
	b := setup(t, func(w http.ResponseWriter, r *http.Request) {
		method, path = r.Method, r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, modelListBody)
	})
	list, err := b.client.ListModels(ctxT(t), WithHeader("X-Mimoq-Worker", "w1"))
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	if method != http.MethodGet || path != "/v1/models" {
		t.Errorf("request = %s %s, want GET /v1/models", method, path)
	}
	h := b.last(t).header
	if h.Get("Authorization") != "Bearer "+testKey || h.Get("X-Mimoq-Worker") != "w1" || h.Get("Content-Type") != "" || len(b.last(t).body) != 0 {
		t.Errorf("headers = %v", h)
	}
	want := []ModelInfo{
		{ID: "mimo-v2.6-pro", Object: "model", Created: 1790000000, OwnedBy: "xiaomi"},
		{ID: "mimo-v2.6-flash", Object: "model", Created: 1790000000, OwnedBy: "xiaomi"},
		{ID: "mimo-v2.5-tts", Object: "model", OwnedBy: "xiaomi"}, // a created of the wrong type is left zero
	}
	if len(list) != len(want) {
		t.Fatalf("ListModels = %+v", list)
	}
	for i := range want {
		if list[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, list[i], want[i])
		}
	}
	if ids := strings.Join(ModelIDs(list), ","); ids != "mimo-v2.6-pro,mimo-v2.6-flash,mimo-v2.5-tts" {
		t.Errorf("ModelIDs = %s", ids)
	}
}

func TestListModelsAPIKeyHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}, func(o *Options) { o.AuthStyle = AuthAPIKey })
	list, err := b.client.ListModels(ctxT(t))
	if err != nil || len(list) != 0 {
		t.Fatalf("ListModels = %v, %v", list, err)
	}
	if h := b.last(t).header; h.Get("Api-Key") != testKey || h.Get("Authorization") != "" {
		t.Errorf("headers = %v", h)
	}
}

func TestListModelsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantReason  string // MalformedResponseError.Reason; "" for an APIError
		class       Class
		why         Reason
	}{
		{"unauthorized echoing the key", 401, "application/json", `{"error":{"code":"401","message":"Invalid API Key ` + testKey + `","type":"authentication_error"}}`, "", ClassTerminal, ReasonAuthentication},
		{"rate limited", 429, "application/json", bodyRate429, "", ClassRetryable, ReasonRateLimited},
		{"proxy page", 404, "text/html", "<html>404 Not Found</html>", "", ClassTerminal, ReasonProxyError},
		{"server error", 503, "application/json", `{"error":{"code":"503","message":"overloaded"}}`, "", ClassRetryable, ReasonServerError},
		{"empty", 200, "application/json", "", "empty body", ClassRetryable, ReasonMalformedResponse},
		{"html 200", 200, "text/html", "<html>portal</html>", "not JSON", ClassRetryable, ReasonMalformedResponse},
		{"array", 200, "application/json", `[{"id":"x"}]`, "not a JSON object", ClassRetryable, ReasonMalformedResponse},
		{"no data", 200, "application/json", `{"object":"list"}`, "missing data", ClassRetryable, ReasonMalformedResponse},
		{"null data", 200, "application/json", `{"object":"list","data":null}`, "missing data", ClassRetryable, ReasonMalformedResponse},
		{"truncated", 200, "application/json", `{"object":"list","data":[{"id":"mimo`, "invalid or truncated JSON", ClassRetryable, ReasonMalformedResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			list, err := b.client.ListModels(ctxT(t))
			if err == nil {
				t.Fatalf("ListModels = %v, want an error", list)
			}
			checkSecretFree(t, err)
			if c := Classify(err); c.Class != tc.class || c.Reason != tc.why || c.StatusCode != tc.status {
				t.Errorf("Classify = %+v, want %s/%s", c, tc.class, tc.why)
			}
			var me *MalformedResponseError
			var ae *APIError
			switch {
			case tc.wantReason != "" && (!errors.As(err, &me) || me.Reason != tc.wantReason):
				t.Errorf("err = %v, want a malformed response %q", err, tc.wantReason)
			case tc.wantReason == "" && !errors.As(err, &ae):
				t.Errorf("err = %T %v, want an *APIError", err, err)
			}
		})
	}
}

func TestListModelsConnectionRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.Close()
	_, err := b.client.ListModels(ctxT(t))
	var te *TransportError
	if !errors.As(err, &te) || Classify(err).Class != ClassRetryable {
		t.Fatalf("ListModels on a closed server = %v", err)
	}
	checkSecretFree(t, err)
}

func TestListModelsRejectsBadHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, err := b.client.ListModels(ctxT(t), WithHeader("Bad Name", "x"))
	var ve *ValidationError
	if !errors.As(err, &ve) || b.count() != 0 {
		t.Fatalf("ListModels with a bad header = %v (sent %d)", err, b.count())
	}
}

func FuzzParseModelList(f *testing.F) {
	f.Add([]byte(modelListBody))
	f.Add([]byte(`{"object":"list","data":[]}`))
	f.Add([]byte(`{"data":[{"id":1},{"id":"a","created":1e99}]}`))
	f.Add([]byte(`{"data":{"id":"a"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		list, err := parseModelList(200, "r", body)
		if err != nil {
			var me *MalformedResponseError
			if !errors.As(err, &me) || me.Reason == "" || Classify(err).Reason != ReasonMalformedResponse {
				t.Fatalf("error %T %v, want a *MalformedResponseError", err, err)
			}
			return
		}
		for _, m := range list {
			if m.ID == "" {
				t.Fatalf("an entry without an ID: %+v", list)
			}
		}
	})
}
