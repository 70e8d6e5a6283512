package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
)

func (a *app) submitCmd() *cobra.Command {
	var (
		model, prompt, bodyPath, queue, idemKey, deadline, hook string
		wait, asJSON, hookResult                                bool
	)
	cmd := &cobra.Command{
		Use:   "submit --model M (--prompt TEXT | --body FILE|-)",
		Short: "Enqueue one request; print its job ID, or with --wait its result",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := a.submitBody(model, prompt, bodyPath)
			if err != nil {
				return err
			}
			var within time.Duration
			if deadline != "" {
				if within, err = enqueue.ParseDeadline(deadline); err != nil {
					return usagef("invalid --deadline: %v", err)
				}
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			c := d.client
			opts := []enqueue.SubmitOption{enqueue.WithQueue(queue)}
			if idemKey != "" {
				opts = append(opts, enqueue.WithIdempotencyKey(idemKey))
			}
			if within > 0 {
				opts = append(opts, enqueue.WithDeadline(time.Now().Add(within)))
			}
			if hook != "" {
				opts = append(opts, enqueue.WithWebhook(hook))
				if hookResult {
					opts = append(opts, enqueue.WithWebhookResult())
				}
			} else if hookResult {
				return usagef("--webhook-include-result needs --webhook URL")
			}
			id, err := c.Submit(cmd.Context(), body, opts...)
			var inv *enqueue.InvalidRequestError
			if errors.As(err, &inv) {
				return &usageError{err: inv}
			}
			if err != nil {
				return err
			}
			if !wait {
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(map[string]string{"id": id})
				}
				_, err := fmt.Fprintln(a.stdout, id)
				return err
			}
			return a.waitAndPrint(cmd.Context(), c, id, 0, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model to call (required with --prompt)")
	f.StringVar(&prompt, "prompt", "", "user message text")
	f.StringVar(&bodyPath, "body", "", "file with a chat-completions request body, or - for stdin")
	f.StringVar(&queue, "queue", enqueue.QueueInteractive, "queue to submit to")
	f.StringVar(&idemKey, "idempotency-key", "", "submit at most once per key")
	f.StringVar(&deadline, "deadline", "", "expire the job if it has not started within this duration (e.g. 30s, 5m)")
	f.StringVar(&hook, "webhook", "", "POST a signed job.* event to this https URL when the job ends")
	f.BoolVar(&hookResult, "webhook-include-result", false, "the webhook event carries the job's result")
	f.BoolVar(&wait, "wait", false, "wait for the outcome and print the result")
	f.BoolVar(&asJSON, "json", false, "print machine-readable JSON")
	cmd.MarkFlagsMutuallyExclusive("prompt", "body")
	return cmd
}

// submitBody builds the request body from --prompt or --body.
func (a *app) submitBody(model, prompt, bodyPath string) ([]byte, error) {
	switch {
	case prompt != "":
		if model == "" {
			return nil, usagef("--model is required with --prompt")
		}
		return json.Marshal(apiclient.NewRequest(model, apiclient.NewMessage("user", prompt)))
	case bodyPath != "":
		var (
			raw []byte
			err error
		)
		if bodyPath == "-" {
			raw, err = io.ReadAll(io.LimitReader(a.stdin, 64<<20))
		} else {
			raw, err = os.ReadFile(bodyPath)
		}
		if err != nil {
			return nil, usagef("read --body: %v", err)
		}
		if model == "" {
			return raw, nil
		}
		req, err := apiclient.ParseRequest(raw)
		if err != nil {
			return nil, usagef("%s: %v", bodyPath, err)
		}
		if req.Model != "" && req.Model != model {
			return nil, usagef("--model %q differs from the body's model %q", model, req.Model)
		}
		req.Model = model
		return json.Marshal(req)
	default:
		return nil, usagef("give the request with --prompt TEXT or --body FILE")
	}
}

// waitAndPrint waits for job id (at most d when d > 0) and prints it. A job
// that did not succeed is a runtime failure (exit status 1).
func (a *app) waitAndPrint(ctx context.Context, c *enqueue.Client, id string, d time.Duration, asJSON bool) error {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	j, err := c.Wait(ctx, id)
	if err != nil && j == nil {
		return err
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("job %s is still %s after %s", id, j.State, d)
	}
	if asJSON {
		if perr := json.NewEncoder(a.stdout).Encode(j); perr != nil {
			return perr
		}
	} else if j.State == enqueue.StateSucceeded {
		fmt.Fprintln(a.stdout, resultText(j.Result))
	} else if err == nil {
		printJob(a.stdout, j)
	}
	if err != nil {
		return err
	}
	if j.State != enqueue.StateSucceeded {
		msg := string(j.State)
		if j.Error != nil {
			msg = fmt.Sprintf("%s: %s %s", j.State, j.Error.Code, j.Error.Message)
		}
		return fmt.Errorf("job %s %s", id, msg)
	}
	return nil
}

// resultText is the assistant's answer in a stored response body.
func resultText(raw json.RawMessage) string {
	var r apiclient.Response
	if err := json.Unmarshal(raw, &r); err != nil || len(r.Choices) == 0 {
		return string(raw)
	}
	m := r.Choices[0].Message
	if m.Content == "" && m.Audio != nil {
		return fmt.Sprintf("[audio: %d base64 bytes] %s", len(m.Audio.Data), m.Audio.Transcript)
	}
	return m.Content
}
