package apiclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/mimoq/mimoq/apiclient"
)

func Example() {
	// A stand-in for the MiMo API.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Request-Id", "req-1")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"mimo-v2.6-flash",
			"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],
			"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`)
	}))
	defer srv.Close()

	client, err := apiclient.New(apiclient.Options{BaseURL: srv.URL + "/v1", APIKey: "sk-example"})
	if err != nil {
		panic(err)
	}
	// A line of a batch file: thinking is not a typed field, and is sent as written.
	req, err := apiclient.ParseRequest([]byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"disabled"}}`))
	if err != nil {
		panic(err)
	}
	resp, err := client.Do(context.Background(), req, apiclient.WithHeader("X-Mimoq-Job-Id", "job-1"))
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Choices[0].Message.Content, resp.Usage.TotalTokens, resp.RequestID)
	// Output: Hello! 11 req-1
}

func ExampleClassify() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "20")
		w.Header().Set("X-Request-Id", "req-2")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"code":"429","message":"Too many requests","type":"limitation"}}`)
	}))
	defer srv.Close()

	client, err := apiclient.New(apiclient.Options{BaseURL: srv.URL, APIKey: "sk-example"})
	if err != nil {
		panic(err)
	}
	req := apiclient.NewRequest("mimo-v2.6-pro", apiclient.NewMessage("user", "Hi"))
	_, err = client.Do(context.Background(), req)

	fmt.Println(err)
	var apiErr *apiclient.APIError
	if errors.As(err, &apiErr) {
		fmt.Println("raw code:", apiErr.RawCode)
	}
	c := apiclient.Classify(err)
	fmt.Println(c.Class, c.Reason, c.RetryAfter, c.PauseLane)
	// Output:
	// mimo api: 429 rate_limit_exceeded: Too many requests (request_id req-2)
	// raw code: 429
	// retryable rate_limited 20s false
}

func ExampleModels_Validate() {
	models, err := apiclient.ParseModels("mimo-v2.6-pro=131072,mimo-v2.6-flash=131072")
	if err != nil {
		panic(err)
	}
	req := apiclient.NewRequest("mimo-v2.6-flash", apiclient.NewMessage("robot", "beep"))
	fmt.Println(models.Validate(req))
	req.Model = "gpt-4"
	fmt.Println(models.Validate(req))
	// Output:
	// messages[0].role "robot" is not one of system, user, assistant, tool, developer
	// model "gpt-4" is not one of mimo-v2.6-pro, mimo-v2.6-flash
}
