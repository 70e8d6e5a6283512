package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mimoq/mimoq/internal/webhooks"
)

func (a *app) webhookCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Webhook deliveries: list, show one with its attempts, resend"}
	var (
		state  string
		limit  int
		asJSON bool
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "Deliveries, newest first",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			states := []string{webhooks.StatePending, webhooks.StateDelivered, webhooks.StateFailed, webhooks.StateGone}
			if state != "" && !slices.Contains(states, state) {
				return usagef("invalid --state=%q: want one of %v", state, states)
			}
			if limit < 1 {
				return usagef("invalid --limit=%d: must be at least 1", limit)
			}
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			ds, _, err := webhooks.NewStore(d.rdb, d.env.ResultTTL).List(cmd.Context(), state, "", limit)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				for _, dl := range ds {
					if err := enc.Encode(dl); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEVENT\tSTATE\tATTEMPTS\tLAST\tCREATED\tURL")
			for _, dl := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.ID, dl.Type, dl.State, len(dl.Attempts),
					dash(dl.LastAnswer()), fmtTime(dl.CreatedAt), dl.URL)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only deliveries in this state (pending, delivered, failed, gone)")
	list.Flags().IntVar(&limit, "limit", 50, "list at most N deliveries")
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "One delivery: its event, target and every attempt",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			dl, err := webhooks.NewStore(d.rdb, d.env.ResultTTL).Get(cmd.Context(), argv[0])
			if errors.Is(err, webhooks.ErrNotFound) {
				return fmt.Errorf("webhook delivery %s not found (never made, or expired after MIMOQ_RESULT_TTL)", argv[0])
			}
			if err != nil {
				return err
			}
			if showJSON {
				return json.NewEncoder(a.stdout).Encode(dl)
			}
			printDelivery(a.stdout, dl)
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print the delivery as JSON")

	resend := &cobra.Command{
		Use:   "resend ID…",
		Short: "Send deliveries again (failed ones, or any), with the same webhook-id",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			d, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer d.close()
			store := webhooks.NewStore(d.rdb, d.env.ResultTTL)
			for _, id := range argv {
				if err := store.Resend(cmd.Context(), id); err != nil {
					if errors.Is(err, webhooks.ErrNotFound) {
						return fmt.Errorf("webhook delivery %s not found", id)
					}
					return err
				}
				fmt.Fprintf(a.stdout, "delivery %s will be sent again\n", id)
			}
			return nil
		},
	}
	cmd.AddCommand(list, show, resend)
	return cmd
}

func printDelivery(w io.Writer, d *webhooks.Delivery) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", d.ID)
	fmt.Fprintf(tw, "event:\t%s %s\n", d.Type, d.EventID)
	fmt.Fprintf(tw, "url:\t%s\n", d.URL)
	fmt.Fprintf(tw, "source:\t%s\n", d.Source)
	fmt.Fprintf(tw, "state:\t%s\n", d.State)
	fmt.Fprintf(tw, "created:\t%s\n", fmtTime(d.CreatedAt))
	if !d.NextAt.IsZero() {
		fmt.Fprintf(tw, "next try:\t%s\n", fmtTime(d.NextAt))
	}
	_ = tw.Flush()
	if len(d.Attempts) > 0 {
		fmt.Fprintln(w, "\nattempts:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  at\tstatus\tms\terror / answer")
		for _, a := range d.Attempts {
			note := a.Error
			if note == "" {
				note = a.Answer
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", fmtTime(a.At), a.Status, a.LatencyMs, note)
		}
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "\nbody:\n%s\n", d.Body)
}
