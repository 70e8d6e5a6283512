package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/enqueue"
)

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Inspect jobs"}
	var (
		wait   time.Duration
		asJSON bool
	)
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Status and result of one job",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			c := d.client
			if wait > 0 {
				return a.waitAndPrint(cmd.Context(), c, argv[0], wait, asJSON)
			}
			j, err := c.Get(cmd.Context(), argv[0])
			if errors.Is(err, enqueue.ErrNotFound) {
				return fmt.Errorf("job %s not found (never submitted, or its record expired after MIMOQ_RESULT_TTL)", argv[0])
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(j)
			}
			printJob(a.stdout, j)
			return nil
		},
	}
	get.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the job to end")
	get.Flags().BoolVar(&asJSON, "json", false, "print the job record as JSON")
	cmd.AddCommand(get)
	return cmd
}

// printJob writes a job for a person: fields, then the attempt history, then
// the result.
func printJob(w io.Writer, j *enqueue.Job) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", j.ID)
	row("state", string(j.State))
	row("model", j.Model)
	row("queue", j.Queue)
	row("batch", j.BatchID)
	row("custom_id", j.CustomID)
	row("attempts", fmt.Sprint(j.Attempts))
	row("submitted", fmtTime(j.SubmittedAt))
	row("deadline", fmtTime(j.Deadline))
	row("finished", fmtTime(j.FinishedAt))
	row("request_id", j.RequestID)
	if u := j.Usage; u != nil {
		row("usage", fmt.Sprintf("%d prompt (%d cached) + %d completion (%d reasoning) = %d tokens", u.PromptTokens,
			u.CachedTokens, u.CompletionTokens, u.ReasoningTokens, u.TotalTokens))
	}
	if j.Cost != nil {
		row("cost", fmtUSD(j.Cost.USD))
	}
	if j.ServedModel != "" {
		row("served_model", j.ServedModel)
	}
	if e := j.Error; e != nil {
		row("error", fmt.Sprintf("%s (%s) %d %s: %s", e.Class, e.Reason, e.StatusCode, e.Code, e.Message))
	}
	_ = tw.Flush()
	if len(j.History) > 0 {
		fmt.Fprintln(w, "\nhistory:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tstart\tms\tstatus\tcode\tclass\treason\trequest_id\tnext_delay_ms")
		for _, h := range j.History {
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", h.Attempt, fmtTime(h.Start), h.DurationMs,
				h.StatusCode, h.ErrorCode, h.Class, h.Reason, h.RequestID, h.NextDelay)
		}
		_ = tw.Flush()
	}
	if len(j.Result) > 0 {
		fmt.Fprintf(w, "\nresult:\n%s\n", resultText(j.Result))
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}
