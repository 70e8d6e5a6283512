package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/ops"
)

// dlqFilterFlags are the filters every dlq subcommand shares.
type dlqFilterFlags struct{ in dlq.FilterInput }

func (f *dlqFilterFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.in.Queue, "queue", "", "only dead letters of this queue")
	fs.StringVar(&f.in.Batch, "batch", "", "only dead letters of this batch ID")
	fs.StringVar(&f.in.Model, "model", "", "only dead letters of this model")
	fs.StringVar(&f.in.Code, "code", "", "only dead letters with this error code, e.g. not_found")
	fs.StringVar(&f.in.Status, "status", "", "only dead letters with this HTTP status, e.g. 404")
	fs.StringVar(&f.in.Class, "class", "", "only dead letters of this class: terminal or exhausted")
	fs.StringVar(&f.in.Since, "since", "", "only dead letters that died since T: a duration back from now (2h, 30m, 3d), a date or a time (UTC unless it has an offset)")
	fs.StringVar(&f.in.Until, "until", "", "only dead letters that died before T (as --since)")
}

// set reports whether any filter was given.
func (f *dlqFilterFlags) set() bool { return f.in != (dlq.FilterInput{}) }

// filter checks the flags through dlq.ParseFilter, the parser the HTTP API
// and the web page use too; a bad value is a usage error naming its flag.
func (f *dlqFilterFlags) filter(now time.Time) (dlq.Filter, error) {
	out, err := dlq.ParseFilter(f.in, now)
	var fe *dlq.FieldError
	if errors.As(err, &fe) {
		return out, usagef("invalid --%s %q: want %s", fe.Field, fe.Value, fe.Want)
	}
	return out, err
}

func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, requeue, delete and export dead letters",
		Long: `Dead letters are jobs that failed for good: a terminal error (400, 401, 404, ...) or
every attempt used up on retryable ones. Each keeps its full request, its last error and
every attempt. Find out why jobs died with list and show, fix the cause, then requeue
exactly those jobs with a fresh attempt budget.`,
	}
	cmd.AddCommand(a.dlqListCmd(), a.dlqShowCmd(), a.dlqActionCmd("requeue"), a.dlqActionCmd("delete"), a.dlqExportCmd())
	return cmd
}

// listLine is the --json shape of one dead letter in `dlq list`.
type listLine struct {
	ID           string    `json:"id"`
	BatchID      string    `json:"batch_id"`
	CustomID     string    `json:"custom_id"`
	Queue        string    `json:"queue"`
	Model        string    `json:"model"`
	Class        string    `json:"class"`
	StatusCode   int       `json:"status_code"`
	ErrorCode    string    `json:"error_code"`
	ErrorMessage string    `json:"error_message"`
	RequestID    string    `json:"request_id"`
	Attempts     int       `json:"attempts"`
	DeadAt       time.Time `json:"dead_at"`
}

// defaultTableLimit is how many rows `dlq list` shows on a terminal unless
// --limit says otherwise; scripts (--json, or output not to a terminal) get
// everything.
const defaultTableLimit = 100

func (a *app) dlqListCmd() *cobra.Command {
	var (
		ff     dlqFilterFlags
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [filters]",
		Short: "List dead letters, newest first",
		Long: `List dead letters, newest first. Filters combine (all must match).

On a terminal the output is a table of at most 100 rows unless --limit says otherwise;
with --json, or when the output is not a terminal, every matching dead letter is
listed (one JSON object per line with --json), streamed page by page.`,
		Example: `  mimoq dlq list --batch 01JD... --json
  mimoq dlq list --model mimo-v2.6-pro --status 401 --since 2h
  mimoq dlq list --class exhausted --limit 20`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			if limit < -1 {
				return usagef("invalid --limit %d: want 0 (no limit) or more", limit)
			}
			table := !asJSON
			if limit == -1 {
				limit = 0
				if table && isTerminal(a.stdout) {
					limit = defaultTableLimit
				}
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			return a.listDead(cmd.Context(), d.store, f, limit, asJSON)
		},
	}
	ff.register(cmd.Flags())
	cmd.Flags().IntVar(&limit, "limit", -1, "list at most N (0: all; default 100 on a terminal, all otherwise)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

func (a *app) listDead(ctx context.Context, store *dlq.Store, f dlq.Filter, limit int, asJSON bool) error {
	out := bufio.NewWriterSize(a.stdout, 64<<10)
	defer out.Flush()
	enc := json.NewEncoder(out)
	var tw *tabwriter.Writer
	if !asJSON {
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tBATCH\tCUSTOM_ID\tMODEL\tCLASS\tSTATUS\tCODE\tMESSAGE\tATTEMPTS\tDEAD AT")
	}
	n := 0
	errStop := errors.New("stop")
	page := 1000
	if limit > 0 {
		page = min(limit, page)
	}
	err := store.Iterate(ctx, f, page, func(r dlq.Record) error {
		if limit > 0 && n == limit {
			return errStop
		}
		n++
		if asJSON {
			return enc.Encode(listLine{ID: r.ID, BatchID: r.BatchID, CustomID: r.CustomID, Queue: r.Queue, Model: r.Model,
				Class: string(r.Class), StatusCode: r.StatusCode, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
				RequestID: r.RequestID, Attempts: r.Attempts, DeadAt: r.DeadAt})
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, dash(r.BatchID), dash(short(r.CustomID, 24)),
			r.Model, string(r.Class), dash(statusText(r.StatusCode)), dash(r.ErrorCode), dash(short(oneLine(r.ErrorMessage), 48)),
			r.Attempts, fmtTime(r.DeadAt))
		if n%500 == 0 {
			return tw.Flush() // keep memory bounded: columns re-align every 500 rows
		}
		return nil
	}, dlq.WithDetail(false))
	if err != nil && !errors.Is(err, errStop) {
		return err
	}
	if asJSON {
		return nil
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case n == 0:
		fmt.Fprintln(out, "no dead letters match")
	case errors.Is(err, errStop):
		fmt.Fprintf(out, "\nshowing the newest %d; --limit 0 lists all, `mimoq stats` counts them\n", n)
	}
	return nil
}

func (a *app) dlqShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "One dead letter with its full request, last error and every attempt",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			r, err := d.store.Get(cmd.Context(), argv[0])
			if errors.Is(err, dlq.ErrNotFound) {
				return notDeadError(cmd.Context(), d.client, argv[0])
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(r)
			}
			printDead(a.stdout, r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON (request and history included)")
	return cmd
}

// notDeadError says why id is not a dead letter: unknown, or alive in some
// state.
func notDeadError(ctx context.Context, c *enqueue.Client, id string) error {
	j, err := c.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("job %s is not in the dead-letter queue (no such job, or its record expired)", id)
	}
	return fmt.Errorf("job %s is not in the dead-letter queue (it is %s)", id, j.State)
}

func printDead(w io.Writer, r *dlq.Record) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", r.ID)
	row("batch", r.BatchID)
	row("custom_id", r.CustomID)
	row("queue", r.Queue)
	row("model", r.Model)
	row("class", string(r.Class))
	row("reason", r.Reason)
	row("status", statusText(r.StatusCode))
	row("error_code", r.ErrorCode)
	row("error_type", r.ErrorType)
	row("error", oneLine(r.ErrorMessage))
	row("request_id", r.RequestID)
	row("attempts", strconv.Itoa(r.Attempts))
	row("dead_at", fmtTime(r.DeadAt))
	_ = tw.Flush()
	if len(r.History) > 0 {
		fmt.Fprintln(w, "\nattempts:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tTIME\tSTATUS\tCODE\tREQUEST_ID\tLATENCY\tCLASS\tNOTE")
		for _, h := range r.History {
			note := h.Reason
			if h.Message != "" {
				note = short(oneLine(h.Message), 60)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", attemptNo(h), fmtTime(h.Start), dash(statusText(h.StatusCode)),
				dash(h.ErrorCode), dash(h.RequestID), (time.Duration(h.DurationMs) * time.Millisecond).String(), dash(string(h.Class)), note)
		}
		_ = tw.Flush()
	}
	if len(r.Request) > 0 {
		fmt.Fprintf(w, "\nrequest:\n%s\n", indentJSON(r.Request))
	}
}

func attemptNo(h enqueue.Attempt) string {
	if h.Attempt == 0 {
		return "-"
	}
	return strconv.Itoa(h.Attempt)
}

func indentJSON(raw json.RawMessage) string {
	// json.Indent keeps the request as written: its key order and numbers.
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// dlqActionCmd builds `dlq requeue` and `dlq delete`.
func (a *app) dlqActionCmd(verb string) *cobra.Command {
	var (
		ff            dlqFilterFlags
		all, dry, yes bool
		asJSON        bool
		setModel      string
	)
	short, past := "Requeue dead letters with a fresh attempt budget", "requeued"
	if verb == "delete" {
		short, past = "Delete dead letters (their job records stay, state dead)", "deleted"
	}
	cmd := &cobra.Command{
		Use:   verb + " (ID... | --all) [filters]",
		Short: short,
		Long: short + `.

Give job IDs, or --all for every dead letter that matches the filters (all of them
when none is given). With IDs, filters narrow them further. --dry-run only counts.
On a terminal, --all asks for confirmation first; --yes skips it. A command whose
stdin is not a terminal never asks. An ID that is not a dead letter is reported on
stderr and makes the exit status 1; the others are still handled.`,
		Example: `  mimoq dlq ` + verb + ` --all --batch 01JD... --dry-run
  mimoq dlq ` + verb + ` --all --model mimo-v2.6-pro --status 401 --since 2h --yes
  mimoq dlq ` + verb + ` 01JD... 01JE...`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			switch {
			case all && len(ids) > 0:
				return usagef("give job IDs or --all, not both")
			case !all && len(ids) == 0:
				return usagef("give the job IDs to %s, or --all (with filters) for every matching dead letter", verb)
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			ctx := cmd.Context()
			sel := ops.Selection{IDs: ids, All: all, Filter: f}
			act := d.ops.Requeue
			if verb == "delete" {
				act = d.ops.Delete
			}
			if all && !dry && !yes && isTerminal(a.stdin) {
				n, err := d.store.Count(ctx, f)
				if err != nil {
					return err
				}
				if n == 0 {
					fmt.Fprintln(a.stdout, "no dead letters match")
					return nil
				}
				if !a.confirm(fmt.Sprintf("%s %d dead letters%s? [y/N] ", verb, n, describeFilter(&ff))) {
					return errors.New("canceled: nothing was changed")
				}
			}
			var opts ops.Options
			opts.DryRun = dry
			if setModel != "" {
				if err := checkSetModel(ctx, d, setModel); err != nil {
					return err
				}
				opts.SetModel = setModel
			}
			bar := a.progress(len(ids) == 0 || len(ids) > 100, past)
			if bar != nil {
				opts.Progress = func(done, total int) {
					bar.ChangeMax(total)
					_ = bar.Set(done)
				}
			}
			res, err := act(ctx, sel, opts)
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(a.stderr)
			}
			for _, id := range res.NotDead {
				fmt.Fprintf(a.stderr, "mimoq: %v\n", notDeadError(ctx, d.client, id))
			}
			if asJSON {
				if perr := json.NewEncoder(a.stdout).Encode(res); perr != nil && err == nil {
					err = perr
				}
			} else if dry {
				fmt.Fprintf(a.stdout, "would %s %d dead letters (dry run: nothing changed)\n", verb, res.Matched)
			} else {
				fmt.Fprintf(a.stdout, "%s %d dead letters\n", past, res.Done)
				if res.Done < res.Matched {
					fmt.Fprintf(a.stdout, "%d had changed meanwhile (gone, or dead again) and were left as they are\n", res.Matched-res.Done)
				}
			}
			if err != nil {
				return err
			}
			if len(res.NotDead) > 0 {
				return fmt.Errorf("%d of the IDs given are not dead letters", len(res.NotDead))
			}
			return nil
		},
	}
	ff.register(cmd.Flags())
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter that matches the filters")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "count what would be done, change nothing")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print the outcome as JSON: {"matched","done","not_dead","dry_run"}`)
	if verb == "requeue" {
		cmd.Flags().StringVar(&setModel, "set-model", "", "rewrite each request's model to this one (e.g. the successor of a retired model)")
	}
	return cmd
}

// checkSetModel refuses a --set-model the queue would not accept: the
// requeued jobs would die again at once.
func checkSetModel(ctx context.Context, d *deps, model string) error {
	models, _, _, err := d.client.Catalog(ctx)
	if err != nil {
		return err
	}
	if _, ok := models.Lookup(model); !ok {
		return usagef("--set-model %q is not one of %s", model, strings.Join(models.Names(), ", "))
	}
	return nil
}

func describeFilter(f *dlqFilterFlags) string {
	if !f.set() {
		return " (all of them)"
	}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("queue", f.in.Queue)
	add("batch", f.in.Batch)
	add("model", f.in.Model)
	add("code", f.in.Code)
	add("status", f.in.Status)
	add("class", f.in.Class)
	add("since", f.in.Since)
	add("until", f.in.Until)
	return " with " + strings.Join(parts, " ")
}

// confirm asks a yes/no question on the terminal.
func (a *app) confirm(q string) bool {
	fmt.Fprint(a.stderr, q)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// progress returns a progress bar on stderr when it is a terminal and the
// action is bulk, else nil.
func (a *app) progress(bulk bool, what string) *progressbar.ProgressBar {
	if !bulk || !isTerminal(a.stderr) {
		return nil
	}
	return progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("dead letters"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (a *app) dlqExportCmd() *cobra.Command {
	var (
		ff  dlqFilterFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "export [filters] [-o FILE]",
		Short: "Write dead letters as JSONL (full records: request and attempts included)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			w := a.stdout
			var file *os.File
			if out != "" && out != "-" {
				if file, err = os.Create(out); err != nil {
					return usagef("cannot write -o %s: %v", out, err)
				}
				w = file
			}
			bw := bufio.NewWriterSize(w, 256<<10)
			n, err := d.ops.Export(cmd.Context(), f, bw)
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			if file != nil {
				if cerr := file.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return fmt.Errorf("export dead letters: %w", err)
			}
			if file != nil {
				fmt.Fprintf(a.stderr, "exported %d dead letters to %s\n", n, out)
			}
			return nil
		},
	}
	ff.register(cmd.Flags())
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

func statusText(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
