package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/enqueue"
)

func (a *app) batchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "batch", Short: "Submit batch files, watch them, fetch their results"}
	cmd.AddCommand(a.batchSubmitCmd(), a.batchStatusCmd(), a.batchResultsCmd(), a.batchCancelCmd(), a.batchListCmd())
	return cmd
}

// withProducer opens the deps and hands fn the producer client.
func (a *app) withProducer(ctx context.Context, fn func(*enqueue.Client) error) error {
	return a.withDeps(ctx, func(d *deps) error { return fn(d.client) })
}

// isTerminal reports whether w is a terminal (progress bars, tables).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func (a *app) batchSubmitCmd() *cobra.Command {
	var (
		id, queue, window, hook string
		tenant, weight          string
		wait, asJSON            bool
		maxLine                 = byteSize(enqueue.DefaultMaxLineBytes)
		maxCost                 float64
	)
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Validate every line of a JSONL file, then enqueue the whole file; print the batch ID",
		Long: `Validate every line of FILE (the OpenAI Batch input format), and only when all are valid
enqueue them all. Invalid lines are reported as FILE:LINE: reason (the first 20, then a
count) with exit status 2, and nothing is enqueued. Submitting again with the same --id
enqueues nothing twice and completes an interrupted submit.

The batches running on one model share its rate round-robin, so a small batch is not stuck
behind a big one: --weight N gives a batch N shares, and --tenant T makes the share the
tenant's, so that one tenant's many batches together get one share (of their largest weight).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var expiresAt time.Time
			if window != "" {
				d, err := enqueue.ParseCompletionWindow(window)
				if err != nil {
					return usagef("invalid --completion-window: %v", err)
				}
				expiresAt = time.Now().Add(d)
			}
			f, err := os.Open(argv[0])
			if err != nil {
				return usagef("%v", err)
			}
			defer f.Close()
			return a.withProducer(cmd.Context(), func(c *enqueue.Client) error {
				if maxLine > 1<<30 {
					return usagef("invalid --max-line-bytes=%d: at most 1GiB", maxLine)
				}
				if !(maxCost >= 0) || maxCost > 1e6 {
					return usagef("invalid --max-cost=%v: want USD from 0 (none) to 1000000", maxCost)
				}
				opts := enqueue.BatchOptions{ID: id, Queue: queue, Source: argv[0], MaxLineBytes: int(maxLine),
					ExpiresAt: expiresAt, Webhook: hook, MaxCostUSD: maxCost, Tenant: tenant}
				if weight != "" {
					if opts.Weight, err = enqueue.ParseWeight(weight); err != nil {
						return usagef("invalid --weight: %v", err)
					}
				}
				if tenant != "" {
					if err := enqueue.CheckTenant(tenant); err != nil {
						return usagef("invalid --tenant: %v", err)
					}
				}
				var bar *progressbar.ProgressBar
				if isTerminal(a.stderr) && !asJSON {
					phase := ""
					opts.Progress = func(p string, done, total int) {
						if p != phase {
							if bar != nil {
								_ = bar.Finish()
								fmt.Fprintln(a.stderr)
							}
							phase = p
							if p == "validate" {
								bar = progressbar.DefaultBytes(int64(total), "validating "+filepath.Base(argv[0]))
							} else {
								bar = progressbar.Default(int64(total), "enqueueing")
							}
						}
						_ = bar.Set(done)
					}
				}
				b, err := c.SubmitBatch(cmd.Context(), f, opts)
				if bar != nil {
					_ = bar.Finish()
					fmt.Fprintln(a.stderr)
				}
				var ferr *enqueue.BatchFileError
				var inv *enqueue.InvalidRequestError
				switch {
				case errors.As(err, &ferr):
					return &usageError{err: ferr}
				case errors.As(err, &inv), errors.Is(err, enqueue.ErrBatchConflict):
					return &usageError{err: err}
				case err != nil:
					return err
				}
				if wait {
					if !asJSON {
						fmt.Fprintf(a.stderr, "batch %s: %d requests enqueued; waiting\n", b.ID, b.Total)
					}
					return a.watchBatch(cmd.Context(), c, b.ID, asJSON)
				}
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(b)
				}
				fmt.Fprintln(a.stdout, b.ID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "batch ID (default: a new one); reuse it to resubmit safely")
	cmd.Flags().StringVar(&queue, "queue", enqueue.QueueBatch, "queue to submit to")
	cmd.Flags().StringVar(&hook, "webhook", "", "POST a signed batch.* event to this https URL when the batch ends")
	cmd.Flags().StringVar(&window, "completion-window", "",
		"expire the requests not started within this duration (at least 1m, e.g. 24h); default: none")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every request is final, showing progress")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the batch record as JSON")
	cmd.Flags().StringVar(&weight, "weight", "", "the batch's share of each model's rate against other batches, 1 to 1000 (default 1)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "share the models' rate per tenant instead of per batch (letters, digits, '-', '_', '.')")
	cmd.Flags().Float64Var(&maxCost, "max-cost", 0, "most the batch may spend, in USD (MIMOQ_PRICES); then its jobs not started are canceled (budget_exhausted)")
	cmd.Flags().Var(&maxLine, "max-line-bytes", "longest line accepted (e.g. 16MiB); a longer one is refused with its line number")
	return cmd
}

func (a *app) batchStatusCmd() *cobra.Command {
	var watch, asJSON bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Counts, rate, ETA and token usage of a batch; --watch shows a live progress bar",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withProducer(cmd.Context(), func(c *enqueue.Client) error {
				if watch {
					return a.watchBatch(cmd.Context(), c, argv[0], asJSON)
				}
				b, err := c.GetBatch(cmd.Context(), argv[0])
				if err != nil {
					return batchErr(argv[0], err)
				}
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(b)
				}
				printBatch(a.stdout, b)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "show a live progress bar until the batch is done")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the batch record as JSON")
	return cmd
}

// watchBatch shows the batch's progress until every job is final; with
// --json (or off a terminal) it prints the final record only.
func (a *app) watchBatch(ctx context.Context, c *enqueue.Client, id string, asJSON bool) error {
	b, err := c.GetBatch(ctx, id)
	if err != nil {
		return batchErr(id, err)
	}
	var bar *progressbar.ProgressBar
	if isTerminal(a.stderr) && !asJSON {
		bar = progressbar.NewOptions(b.Total,
			progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("batch "+id),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("jobs"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(100*time.Millisecond))
	}
	done := make(chan struct{})
	var final *enqueue.Batch
	var werr error
	go func() {
		defer close(done)
		final, werr = c.WaitBatch(ctx, id)
	}()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if bar != nil {
			_ = bar.Set(b.Succeeded + b.Dead + b.Canceled + b.Expired)
		}
		select {
		case <-done:
			if werr != nil {
				return werr
			}
			if bar != nil {
				_ = bar.Set(final.Total)
				_ = bar.Finish()
				fmt.Fprintln(a.stderr)
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(final)
			}
			printBatch(a.stdout, final)
			if final.Dead > 0 {
				return fmt.Errorf("batch %s: %d of %d requests failed (mimoq batch results %s --errors FILE)", id, final.Dead, final.Total, id)
			}
			if final.Expired > 0 {
				return fmt.Errorf("batch %s: %d of %d requests expired before they ran (its completion window ended)", id, final.Expired, final.Total)
			}
			return nil
		case <-tick.C:
			if nb, err := c.GetBatch(ctx, id); err == nil {
				b = nb
			}
		}
	}
}

func batchErr(id string, err error) error {
	if errors.Is(err, enqueue.ErrNotFound) {
		return fmt.Errorf("batch %s not found (never submitted, or expired after MIMOQ_RESULT_TTL)", id)
	}
	return err
}

func printBatch(w io.Writer, b *enqueue.Batch) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", b.ID)
	fmt.Fprintf(tw, "state:\t%s\n", b.State)
	fmt.Fprintf(tw, "source:\t%s\n", b.Source)
	fmt.Fprintf(tw, "total:\t%d\n", b.Total)
	fmt.Fprintf(tw, "succeeded:\t%d\n", b.Succeeded)
	fmt.Fprintf(tw, "dead:\t%d\n", b.Dead)
	if b.CancelReason != "" {
		fmt.Fprintf(tw, "canceled:\t%d (%s)\n", b.Canceled, b.CancelReason)
	} else {
		fmt.Fprintf(tw, "canceled:\t%d\n", b.Canceled)
	}
	fmt.Fprintf(tw, "expired:\t%d\n", b.Expired)
	if b.Backlog > 0 {
		fmt.Fprintf(tw, "pending:\t%d (%d waiting for their turn)\n", b.Pending, b.Backlog)
	} else {
		fmt.Fprintf(tw, "pending:\t%d\n", b.Pending)
	}
	if b.Weight > 0 || b.Tenant != "" || b.Backlog > 0 {
		share := fmt.Sprintf("weight %d", max(b.Weight, 1))
		if b.Tenant != "" {
			share += ", tenant " + b.Tenant
		}
		if b.Share > 0 {
			share += fmt.Sprintf("; %.0f%% of its lanes' jobs in the last minute", b.Share*100)
		}
		fmt.Fprintf(tw, "share:\t%s\n", share)
	}
	if !b.ExpiresAt.IsZero() {
		fmt.Fprintf(tw, "expires:\t%s\n", fmtTime(b.ExpiresAt))
	}
	if b.Rate > 0 {
		fmt.Fprintf(tw, "rate:\t%.1f jobs/s\n", b.Rate)
	}
	if !b.ETA.IsZero() {
		fmt.Fprintf(tw, "eta:\t%s (%s)\n", fmtTime(b.ETA), time.Until(b.ETA).Round(time.Second))
	}
	fmt.Fprintf(tw, "tokens:\t%d prompt + %d completion = %d\n", b.Usage.PromptTokens, b.Usage.CompletionTokens, b.Usage.TotalTokens)
	if b.Cost != nil {
		c := fmtUSD(b.Cost.USD)
		if b.MaxCostUSD > 0 {
			c += " of at most " + fmtUSD(b.MaxCostUSD)
		}
		fmt.Fprintf(tw, "cost:\t%s\n", c)
	}
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(b.CreatedAt))
	if !b.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "finished:\t%s\n", fmtTime(b.FinishedAt))
	}
	_ = tw.Flush()
}

func (a *app) batchResultsCmd() *cobra.Command {
	var out, errs string
	cmd := &cobra.Command{
		Use:   "results ID",
		Short: "Results as JSONL in the OpenAI Batch output format, in input order",
		Long: `Write one line per request, in input order, in the OpenAI Batch output format: to
stdout, or to -o FILE. --errors FILE writes the lines that did not succeed to FILE as
well (the OpenAI error-file habit). Only final requests are written; run it again (or use
batch status --watch first) for a batch still running.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withProducer(cmd.Context(), func(c *enqueue.Client) error {
				b, err := c.GetBatch(cmd.Context(), argv[0])
				if err != nil {
					return batchErr(argv[0], err)
				}
				w, closeOut, err := createOut(out, a.stdout)
				if err != nil {
					return err
				}
				var ew *bufio.Writer
				if errs != "" {
					f, err := os.Create(errs)
					if err != nil {
						return usagef("--errors: %v", err)
					}
					defer f.Close()
					ew = bufio.NewWriterSize(f, 256<<10)
				}
				var n, nerr int
				err = c.Results(cmd.Context(), argv[0], false, func(l *enqueue.ResultLine) error {
					data, err := json.Marshal(l)
					if err != nil {
						return err
					}
					data = append(data, '\n')
					if _, err := w.Write(data); err != nil {
						return err
					}
					n++
					if l.Error != nil && ew != nil {
						nerr++
						_, err = ew.Write(data)
					}
					return err
				})
				if err == nil && ew != nil {
					err = ew.Flush()
				}
				if cerr := closeOut(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				if out != "" || errs != "" {
					fmt.Fprintf(a.stderr, "batch %s: %d result lines written", b.ID, n)
					if ew != nil {
						fmt.Fprintf(a.stderr, ", %d error lines to %s", nerr, errs)
					}
					fmt.Fprintln(a.stderr)
				}
				if n < b.Total {
					fmt.Fprintf(a.stderr, "batch %s is %s: %d of %d requests are final so far\n", b.ID, b.State, n, b.Total)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write results to FILE instead of stdout")
	cmd.Flags().StringVar(&errs, "errors", "", "also write the failed lines to FILE")
	return cmd
}

// createOut opens path for writing (buffered), or uses def when path is "".
func createOut(path string, def io.Writer) (io.Writer, func() error, error) {
	if path == "" {
		bw := bufio.NewWriterSize(def, 256<<10)
		return bw, bw.Flush, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	return bw, func() error {
		if err := bw.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}, nil
}

func (a *app) batchCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel what has not run yet; running requests finish",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withProducer(cmd.Context(), func(c *enqueue.Client) error {
				n, err := c.CancelBatch(cmd.Context(), argv[0])
				if err != nil {
					return batchErr(argv[0], err)
				}
				fmt.Fprintf(a.stdout, "batch %s canceled: %d requests will not run\n", argv[0], n)
				return nil
			})
		},
	}
}

func (a *app) batchListCmd() *cobra.Command {
	var (
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List batches, newest first",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withProducer(cmd.Context(), func(c *enqueue.Client) error {
				bs, _, err := c.ListBatches(cmd.Context(), "", limit)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					for _, b := range bs {
						if err := enc.Encode(b); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tTOTAL\tSUCCEEDED\tDEAD\tCANCELED\tEXPIRED\tPENDING\tWEIGHT\tTENANT\tCOST\tCREATED\tSOURCE")
				for _, b := range bs {
					cost := "-"
					if b.Cost != nil {
						cost = fmtUSD(b.Cost.USD)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", b.ID, b.State, b.Total, b.Succeeded,
						b.Dead, b.Canceled, b.Expired, b.Pending, max(b.Weight, 1), dash(b.Tenant), cost, fmtTime(b.CreatedAt), b.Source)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "list at most N batches")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per batch")
	return cmd
}

// fmtUSD writes an amount of USD with enough decimals for one call's cost.
func fmtUSD(usd float64) string { return "$" + strconv.FormatFloat(usd, 'f', 6, 64) }
