// Command mimoq is a durable request queue for the MiMo LLM API: it runs workers,
// submits jobs and batches, serves the HTTP API and inspects the dead-letter queue.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
