package mockapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/mimoq/mimoq/internal/mockapi"
)

// Serve the mock on a loopback port, call it as the real API, then read what
// it saw.
func Example() {
	mock, err := mockapi.New(mockapi.Config{Key: "secret"})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	defer mock.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Say hi"}]}`))
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set(mockapi.HeaderJobID, "job-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	fmt.Println(resp.StatusCode, out.Choices[0].Message.Content)

	st := mock.Stats()
	fmt.Println("2xx:", st.ByStatus["200"], "jobs:", st.JobsSeen, "duplicates:", st.Duplicates)
	// Output:
	// 200 You asked about "Say hi" (2 words). To sum up, the answer is yes, with the caveats above; the details matter less than getting feedback early.
	// 2xx: 1 jobs: 1 duplicates: 0
}
