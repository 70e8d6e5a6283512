package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/internal/fair"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

// statsInterval is how often `mimoq stats --watch` refreshes.
const statsInterval = 2 * time.Second

func (a *app) statsCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Jobs per queue and model, dead letters, lanes and API use at a glance",
		Long: `Per queue and model: jobs queued, running, retrying and dead; per model: successes in
the last hour, API calls in the last minute against the configured limit, and the
lane's state (running, cooling down after a 429, or paused, since when and why);
dead letters by error code and HTTP status; and per model a one-line sparkline of the
last hour's API calls and dead letters per minute (the web page's counters).

--watch refreshes every 2 seconds until interrupted; with --json it prints one JSON
object per refresh.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			ctx := cmd.Context()
			clear := watch && !asJSON && isTerminal(a.stdout)
			for {
				st, err := d.ops.Stats(ctx, d.modelNames(ctx))
				if err != nil {
					if watch && ctx.Err() != nil {
						return nil
					}
					return err
				}
				var buf bytes.Buffer
				if asJSON {
					if err := json.NewEncoder(&buf).Encode(st); err != nil {
						return err
					}
				} else {
					if clear {
						buf.WriteString("\x1b[H\x1b[2J") // home, clear screen
					}
					printStats(&buf, st)
					if watch {
						fmt.Fprintf(&buf, "\nrefreshing every %s; Ctrl-C to stop\n", statsInterval)
					}
				}
				if _, err := a.stdout.Write(buf.Bytes()); err != nil {
					return err
				}
				if !watch {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil // interrupted: that is how --watch ends
				case <-time.After(statsInterval):
				}
				if !asJSON && !clear {
					fmt.Fprintln(a.stdout)
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh every 2s until interrupted")
	return cmd
}

// printShares shows how the batches (or tenants) of each lane share it.
func printShares(w io.Writer, shares []fair.LaneShares) {
	if len(shares) == 0 {
		return
	}
	fmt.Fprintln(w, "\nlanes shared by batches (jobs released to each in the last minute):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  QUEUE\tMODEL\tBATCH OR TENANT\tBATCHES\tWEIGHT\tWAITING TURN\tRELEASED/MIN\tSHARE")
	for _, ls := range shares {
		for _, f := range ls.Flows {
			who := strings.TrimPrefix(f.Flow, "b:")
			if f.Tenant != "" {
				who = "tenant " + f.Tenant
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\t%.0f%%\n", ls.Queue, ls.Model, who, len(f.Batches), f.Weight,
				f.Backlog, f.Released, f.Share*100)
		}
	}
	_ = tw.Flush()
}

func printStats(w io.Writer, st *ops.Stats) {
	fmt.Fprintf(w, "mimoq stats at %s\n\n", st.At.Local().Format("2006-01-02 15:04:05"))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tLANE\tQUEUED\tRUNNING\tRETRYING\tDEAD\tOK/1H\tCOST/1H\tCALLS/MIN\tRPM EFFECTIVE/LIMIT")
	for _, m := range st.Models {
		status := laneStatus(m.Lane)
		if m.QuotaSuspect {
			status += " quota?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\n", m.Model, status, m.Queued, m.Running,
			m.Retrying, m.Dead, m.SucceededLastHour, fmtUSD(m.CostLastHour.USD), m.CallsLastMinute, rateText(m.Lane))
	}
	t := st.Totals
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\n", t.Queued, t.Running, t.Retrying, t.Dead)
	_ = tw.Flush()
	if st.ExpiredLastHour > 0 {
		fmt.Fprintf(w, "\nexpired in the last hour (deadline or completion window passed before they ran): %d\n", st.ExpiredLastHour)
	}

	fmt.Fprintln(w, "\nlast hour, one character a minute (now on the right):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range st.Models {
		fmt.Fprintf(tw, "  %s\tcalls/min |%s|\tpeak %d\tdead |%s|\t%d\n", m.Model, sparkline(m.CallsPerMinute),
			slices.Max(append([]int64{0}, m.CallsPerMinute...)), sparkline(m.DeadPerMinute), sum(m.DeadPerMinute))
	}
	_ = tw.Flush()

	var lanes []string
	for _, m := range st.Models {
		switch m.Lane.Status {
		case lane.StatusPaused:
			by := ""
			if m.Lane.PausedBy != "" {
				by = " by " + m.Lane.PausedBy
			}
			lanes = append(lanes, fmt.Sprintf("  %s: paused since %s%s: %s; %s (resume: mimoq lane resume %s)",
				m.Model, fmtTime(m.Lane.PausedSince), by, dash(m.Lane.Reason), probeText(m.Lane), m.Model))
		case lane.StatusCoolingDown:
			lanes = append(lanes, fmt.Sprintf("  %s: cooling down after a 429 until %s (%d in a row)", m.Model,
				fmtTime(m.Lane.CooldownUntil), m.Lane.Throttled))
		}
		if m.QuotaSuspect {
			lanes = append(lanes, fmt.Sprintf("  %s: quota? only 429s since %s under the configured rate: a used-up quota (Token Plan) more likely than a rate limit",
				m.Model, fmtTime(m.Lane.Since429)))
		}
	}
	if len(lanes) > 0 {
		fmt.Fprintf(w, "\nlanes not running:\n%s\n", strings.Join(lanes, "\n"))
	}

	if len(st.ServedModels) > 0 {
		fmt.Fprintln(w, "\nanswered by another model than requested (billed as the one that answered):")
		for _, p := range st.ServedModels {
			fmt.Fprintf(w, "  %s → %s: %d\n", p.Requested, p.Served, p.Count)
		}
	}

	fmt.Fprintln(w, "\nqueues:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  QUEUE\tMODEL\tQUEUED\tWAITING TURN\tRUNNING\tRETRYING\tDEAD\tOLDEST")
	rows := 0
	for _, q := range st.Queues {
		if q.Counts == (ops.Counts{}) {
			continue
		}
		rows++
		paused := ""
		if q.Paused {
			paused = " (paused)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\t%d\t%d\t%d\t%d\t%d\t%s\n", q.Queue, q.Model, paused, q.Queued, q.Backlog, q.Running,
			q.Retrying, q.Dead, age(q.Latency))
	}
	if rows == 0 {
		fmt.Fprintln(tw, "  (no jobs queued, running, retrying or dead)")
	}
	_ = tw.Flush()
	printShares(w, st.Shares)

	if st.DLQ.Total > 0 {
		fmt.Fprintf(w, "\ndead letters: %d", st.DLQ.Total)
		if n := st.DLQ.ByClass["terminal"]; n > 0 {
			fmt.Fprintf(w, ", %d terminal", n)
		}
		if n := st.DLQ.ByClass["exhausted"]; n > 0 {
			fmt.Fprintf(w, ", %d exhausted", n)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  by error code: %s\n", topCounts(st.DLQ.ByCode, 8))
		byStatus := make(map[string]int64, len(st.DLQ.ByStatus))
		for k, v := range st.DLQ.ByStatus {
			byStatus[strconv.Itoa(k)] = v
		}
		fmt.Fprintf(w, "  by HTTP status: %s\n", topCounts(byStatus, 8))
		fmt.Fprintln(w, "  see: mimoq dlq list --status N | --code C | --batch ID")
	} else {
		fmt.Fprintln(w, "\nno dead letters")
	}

	r := st.Reconciler
	if r.LastRun.IsZero() {
		fmt.Fprintln(w, "\nreconciler: not run yet (a worker runs it once a minute)")
		return
	}
	fmt.Fprintf(w, "\nreconciler: last run %s; repaired so far: %d tasks made again, %d dead letters written, %d cancels completed, %d lost\n",
		fmtTime(r.LastRun), r.TasksRecreated, r.DeadLettersWritten, r.CancelsCompleted, r.Lost)
}

// probeText says when a paused lane is probed next.
func probeText(s lane.State) string {
	switch {
	case !s.Probed:
		return "not probed"
	case s.NextProbe.IsZero():
		return "next probe: due now"
	}
	return "next probe " + fmtTime(s.NextProbe)
}

func laneStatus(s lane.State) string {
	switch s.Status {
	case lane.StatusCoolingDown:
		return "cooling down"
	case "":
		return "-"
	}
	return s.Status
}

// rateText is the effective request limit over the configured one.
func rateText(s lane.State) string {
	conf := limitText(s.Limit)
	if s.EffectiveRPM > 0 && s.Limit.RPM > 0 && s.EffectiveRPM < s.Limit.RPM {
		return strconv.Itoa(s.EffectiveRPM) + "/" + conf
	}
	return conf + "/" + conf
}

func limitText(l lane.Limit) string {
	if l.RPM <= 0 {
		return "unlimited"
	}
	return strconv.Itoa(l.RPM)
}

func age(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

// topCounts renders the n largest counts as "k=v, k=v", largest first.
func topCounts(m map[string]int64, n int) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var parts []string
	for i, e := range all {
		if i == n {
			parts = append(parts, fmt.Sprintf("… %d more", len(all)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s=%d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// sparkline draws one character per value, scaled to the largest: a space
// for zero, then ▁ to █.
func sparkline(vals []int64) string {
	const bars = "▁▂▃▄▅▆▇█"
	top := slices.Max(append([]int64{0}, vals...))
	var b strings.Builder
	for _, v := range vals {
		if v <= 0 || top <= 0 {
			b.WriteByte(' ')
			continue
		}
		i := int((v*8 + top - 1) / top) // 1..8, a small non-zero value still shows
		b.WriteRune([]rune(bars)[i-1])
	}
	return b.String()
}

func sum(vals []int64) int64 {
	var n int64
	for _, v := range vals {
		n += v
	}
	return n
}
