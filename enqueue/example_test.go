package enqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mimoq/mimoq/enqueue"
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

	id, _ := c.Submit(ctx, []byte(`{"model":"mimo-v2-flash","messages":[{"role":"user","content":"Hi"}]}`))

	// A worker would do this; here it is played by hand.
	go func() {
		time.Sleep(50 * time.Millisecond)
		p := &enqueue.Payload{JobID: id, Queue: enqueue.QueueInteractive, Model: "mimo-v2-flash"}
		_, _ = c.Records().Begin(ctx, p, "example-worker", time.Now())
		u := &enqueue.Usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}
		_, _ = c.Records().Finish(ctx, id, enqueue.Outcome{State: enqueue.StateSucceeded, Counted: true,
			Result: json.RawMessage(`{"choices":[{"message":{"role":"assistant","content":"Hello!"}}]}`), StatusCode: 200, Usage: u}, time.Now())
		_ = c.Records().PublishDone(ctx, id, enqueue.StateSucceeded)
	}()

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	j, err := c.Wait(wctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(j.State, j.Attempts, j.Usage.TotalTokens, string(j.Result))
	// Output:
	// succeeded 1 8 {"choices":[{"message":{"role":"assistant","content":"Hello!"}}]}
}
