package enqueue_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/internal/redistest"
	"github.com/mimoq/mimoq/worker"
)

func ExampleClient_Submit() {
	rdb, stop := redistest.ForExample()
	defer stop()
	ctx := context.Background()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	body := []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}`)
	id, err := c.Submit(ctx, body, enqueue.WithIdempotencyKey("greeting-1"))
	if err != nil {
		panic(err)
	}
	again, _ := c.Submit(ctx, body, enqueue.WithIdempotencyKey("greeting-1"))
	fmt.Println("same job:", id == again)

	j, _ := c.Get(ctx, id)
	fmt.Println(j.State, j.Queue, j.Model)

	_, err = c.Submit(ctx, []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}`))
	fmt.Println(err)
	// Output:
	// same job: true
	// queued interactive mimo-v2.6-flash
	// invalid request: model "gpt-4o" is not one of mimo-v2.6-pro, mimo-v2.6-flash, mimo-v2.6-pro-ultraspeed
}

func ExampleClient_SubmitBatch() {
	rdb, stop := redistest.ForExample()
	defer stop()
	ctx := context.Background()
	c, _ := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	defer c.Close()

	file := `{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"one"}]}}
{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"mimo-v2.6-pro","messages":[{"role":"user","content":"two"}]}}
`
	b, err := c.SubmitBatch(ctx, strings.NewReader(file), enqueue.BatchOptions{ID: "nightly"})
	if err != nil {
		panic(err)
	}
	fmt.Println(b.ID, b.State, b.Total, b.Pending)

	bad := file + `{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"three"}]}}` + "\n"
	_, err = c.SubmitBatch(ctx, strings.NewReader(bad), enqueue.BatchOptions{Source: "bad.jsonl"})
	fmt.Println(err)
	// Output:
	// nightly running 2 2
	// bad.jsonl:3: custom_id "a" is already used on line 1
	// bad.jsonl: 1 invalid lines; nothing was enqueued
}

func ExampleClient_Wait() {
	rdb, stop := redistest.ForExample()
	defer stop()
	ctx := context.Background()
	c, _ := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	defer c.Close()

	// A worker against the mock API (a real one needs MIMO_API_KEY).
	mock, _ := mockapi.New(mockapi.Config{Key: "sk-example"})
	api := httptest.NewServer(mock)
	defer api.Close()
	w, err := worker.New(worker.Config{Redis: rdb, BaseURL: api.URL + "/v1", APIKey: "sk-example"})
	if err != nil {
		panic(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	defer func() { stopWorker(); <-done }()

	id, _ := c.Submit(ctx, []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}`))
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	j, err := c.Wait(waitCtx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(j.State, j.Attempts, j.Usage.TotalTokens > 0, len(j.Result) > 0)
	// Output:
	// succeeded 1 true true
}
