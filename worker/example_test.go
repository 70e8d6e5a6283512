package worker_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/redistest"
	"github.com/mimoq/mimoq/worker"
)

// A Go service runs a worker of its own from a Redis client and the API's
// settings: nothing else to build.
func Example() {
	rdb, stop := redistest.ForExample()
	defer stop()
	// The API: here the mock, in production https://api.xiaomimimo.com/v1
	// and the service's key.
	mock, _ := mockapi.New(mockapi.Config{Key: "sk-example"})
	api := httptest.NewServer(mock)
	defer api.Close()

	w, err := worker.New(worker.Config{
		Redis:       rdb,
		BaseURL:     api.URL + "/v1",
		APIKey:      "sk-example",
		Concurrency: 8,
		Limit:       worker.Limit{RPM: 600, TPM: 1_000_000},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	producer, _ := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	id, _ := producer.Submit(ctx, []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Say hi"}]}`))
	waitCtx, stopWait := context.WithTimeout(ctx, 30*time.Second)
	defer stopWait()
	j, err := producer.Wait(waitCtx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(j.State, j.Attempts)

	cancel() // a graceful shutdown: calls in flight finish, nothing is lost
	fmt.Println(<-done)
	// Output:
	// succeeded 1
	// <nil>
}
