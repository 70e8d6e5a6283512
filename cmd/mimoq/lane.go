package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) laneCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "lane", Short: "Pause, resume and list model lanes (fleet-wide)"}
	var reason string
	pause := &cobra.Command{
		Use:   "pause MODEL",
		Short: "Stop calls for one model, fleet-wide; its jobs stay queued",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withLanes(cmd.Context(), argv[0], func(ctx context.Context, d *deps) error {
				changed, err := d.lanes.Pause(ctx, argv[0], reason)
				if err != nil {
					return err
				}
				if changed {
					fmt.Fprintf(a.stdout, "lane %s paused\n", argv[0])
				} else {
					fmt.Fprintf(a.stdout, "lane %s was already paused\n", argv[0])
				}
				return nil
			})
		},
	}
	pause.Flags().StringVar(&reason, "reason", "paused by operator", "why, shown by lane list and stats")
	resume := &cobra.Command{
		Use:   "resume MODEL",
		Short: "Restart calls for one model, fleet-wide",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.withLanes(cmd.Context(), argv[0], func(ctx context.Context, d *deps) error {
				changed, err := d.lanes.Resume(ctx, argv[0])
				if err != nil {
					return err
				}
				if changed {
					fmt.Fprintf(a.stdout, "lane %s resumed\n", argv[0])
				} else {
					fmt.Fprintf(a.stdout, "lane %s was not paused\n", argv[0])
				}
				return nil
			})
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "State of every model's lane",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withLanes(cmd.Context(), "", func(ctx context.Context, d *deps) error {
				states, err := d.lanes.List(ctx, d.modelNames(ctx))
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					for _, s := range states {
						if err := enc.Encode(s); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "MODEL\tSTATE\tSINCE/UNTIL\tREASON\tPROBE")
				for _, s := range states {
					when := ""
					switch s.Status {
					case "paused":
						when = "since " + fmtTime(s.PausedSince)
					case "cooling_down":
						when = "until " + fmtTime(s.CooldownUntil)
					}
					probe := ""
					if s.Status == "paused" {
						probe = probeText(s)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Model, s.Status, when, s.Reason, probe)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per lane")
	cmd.AddCommand(pause, resume, list)
	return cmd
}

// withLanes opens the deps for fn, after checking that model (when given)
// is a known model.
func (a *app) withLanes(ctx context.Context, model string, fn func(context.Context, *deps) error) error {
	return a.withDeps(ctx, func(d *deps) error {
		if names := d.modelNames(ctx); model != "" && !slices.Contains(names, model) {
			return usagef("model %q is not one of %v", model, names)
		}
		return fn(ctx, d)
	})
}
