package enqueue_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/mockapi"
	"github.com/mimoq/mimoq/worker"
)

// exampleRedis starts a throwaway redis-server for an example (examples get
// no *testing.T, so they cannot use internal/redistest).
func exampleRedis() (*redis.Client, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, _ := os.MkdirTemp("", "mimoq-example-")
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir)
	if err := cmd.Start(); err != nil {
		panic("redis-server is needed to run this example: " + err.Error())
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	for range 200 {
		if rdb.Ping(context.Background()).Err() == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rdb, func() { rdb.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait(); os.RemoveAll(dir) }
}

func ExampleClient_Submit() {
	rdb, stop := exampleRedis()
	defer stop()
	ctx := context.Background()
	c, err := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	body := []byte(`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"Hi"}]}`)
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
	// queued interactive mimo-v2-flash
	// invalid request: model "gpt-4o" is not one of mimo-v2-pro, mimo-v2-omni, mimo-v2-tts, mimo-v2-flash
}

func ExampleClient_SubmitBatch() {
	rdb, stop := exampleRedis()
	defer stop()
	ctx := context.Background()
	c, _ := enqueue.NewClient(enqueue.ClientConfig{Redis: rdb})
	defer c.Close()

	file := `{"custom_id":"a","body":{"model":"mimo-v2-flash","messages":[{"role":"user","content":"one"}]}}
{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"mimo-v2-pro","messages":[{"role":"user","content":"two"}]}}
`
	b, err := c.SubmitBatch(ctx, strings.NewReader(file), enqueue.BatchOptions{ID: "nightly"})
	if err != nil {
		panic(err)
	}
	fmt.Println(b.ID, b.State, b.Total, b.Pending)

	bad := file + `{"custom_id":"a","body":{"model":"mimo-v2-flash","messages":[{"role":"user","content":"three"}]}}` + "\n"
	_, err = c.SubmitBatch(ctx, strings.NewReader(bad), enqueue.BatchOptions{Source: "bad.jsonl"})
	fmt.Println(err)
	// Output:
	// nightly running 2 2
	// bad.jsonl:3: custom_id "a" is already used on line 1
	// bad.jsonl: 1 invalid lines; nothing was enqueued
}

func ExampleClient_Wait() {
	rdb, stop := exampleRedis()
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

	id, _ := c.Submit(ctx, []byte(`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"Hi"}]}`))
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
