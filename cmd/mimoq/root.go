package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// usageError marks a failure caused by bad usage or invalid input: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usagef returns an error that makes mimoq exit with status 2.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// app carries what every subcommand shares: the streams and the context.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// run executes the command line and returns the process exit status:
// 0 success, 1 runtime failure, 2 bad usage or invalid input.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	// go-redis logs reconnect attempts on its own; mimoq reports what
	// matters itself. Commands that log (worker, serve) route these lines
	// into their logger at debug level.
	redis.SetLogger(redisLog{l: zerolog.Nop()})
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		// cobra reports an unknown subcommand as a plain error.
		err = &usageError{err: err}
	}
	fmt.Fprintf(stderr, "mimoq: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mimoq",
		Short: "A durable request queue for the MiMo LLM API",
		Long: `mimoq is a durable request queue for the MiMo LLM API (and any OpenAI-compatible
chat-completions API). Producers put requests on a Redis-backed queue; workers call the
API at a fleet-wide rate, retry what is retryable and dead-letter what is not.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Flag parsing errors are usage errors (exit status 2).
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})
	root.AddCommand(
		a.workerCmd(),
		a.submitCmd(),
		a.jobCmd(),
		a.batchCmd(),
		a.laneCmd(),
		a.mockapiCmd(),
		a.serveCmd(),
		a.dlqCmd(),
		a.statsCmd(),
		a.webhookCmd(),
		a.modelsCmd(),
	)
	return root
}

// args wraps a cobra positional-argument check so that its failure is a usage
// error (exit status 2).
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return &usageError{err: err}
		}
		return nil
	}
}
