package apiclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey is the API key of every test client. No error string may contain it.
const testKey = "sk-test-SECRET-0123456789abcdef"

// bodyMarker appears in every test request body. No error string may contain it.
const bodyMarker = "REQUEST-BODY-MARKER-7f3a"

// okBody is a minimal well-formed completion.
const okBody = `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"mimo-v2.6-flash",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`

// received is what the test server saw of one request.
type received struct {
	header http.Header
	body   []byte
}

// bundle is one test's server and client.
type bundle struct {
	srv    *httptest.Server
	client *Client

	mu   sync.Mutex
	reqs []received
}

// setup starts a server running handler (which may be nil: reply okBody) and a
// client pointed at it. opts may adjust the client's options.
func setup(t *testing.T, handler http.HandlerFunc, opts ...func(*Options)) *bundle {
	t.Helper()
	b := &bundle{}
	if handler == nil {
		handler = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, okBody)
		}
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, received{header: r.Header.Clone(), body: body})
		b.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(b.srv.Close)
	o := Options{BaseURL: b.srv.URL + "/v1/", APIKey: testKey, RequestTimeout: 10 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	b.client = c
	return b
}

func (b *bundle) last(t *testing.T) received {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the server received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

func (b *bundle) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

// testRequest is a valid request whose body carries bodyMarker.
func testRequest() *Request {
	return NewRequest("mimo-v2.6-flash", NewMessage("user", "say hi "+bodyMarker))
}

// checkSecretFree fails when an error string leaks the key or the request body.
func checkSecretFree(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	if msg == "" {
		t.Error("Error() is empty")
	}
	if strings.Contains(msg, testKey) {
		t.Errorf("Error() contains the API key: %s", msg)
	}
	if strings.Contains(msg, bodyMarker) {
		t.Errorf("Error() contains the request body: %s", msg)
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }
