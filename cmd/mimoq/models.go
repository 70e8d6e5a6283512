package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// modelsOut is `mimoq models --json`: the catalog in use and where it came from.
type modelsOut struct {
	// Source is "live" (GET /models, published by a worker) or "configured"
	// (MIMOQ_MODELS or the default list).
	Source    string        `json:"source"`
	URL       string        `json:"url,omitempty"`
	FetchedAt *time.Time    `json:"fetched_at,omitempty"`
	By        string        `json:"by,omitempty"`
	Models    []modelOutRow `json:"models"`
}

type modelOutRow struct {
	ID              string `json:"id"`
	MaxOutputTokens int    `json:"max_output_tokens,omitempty"`
}

func (a *app) modelsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "models",
		Short: "The model catalog in use: live (from GET /models, when) or configured",
		Long: `The models submit, batch submit and serve accept now. While a worker has published
the live catalog (it reads the API's GET /models at start and every MIMOQ_CATALOG_INTERVAL)
and it is fresh, that one; else the configured list (MIMOQ_MODELS, or the current MiMo
models). Output limits come from the configured list.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withDeps(cmd.Context(), func(d *deps) error {
				models, source, live, err := d.client.Catalog(cmd.Context())
				if err != nil {
					return err
				}
				out := modelsOut{Source: source}
				if live != nil {
					t := live.FetchedAt
					out.URL, out.FetchedAt, out.By = live.Source, &t, live.By
				}
				for _, m := range models {
					out.Models = append(out.Models, modelOutRow{ID: m.Name, MaxOutputTokens: m.MaxOutputTokens})
				}
				if asJSON {
					return json.NewEncoder(a.stdout).Encode(out)
				}
				if live != nil {
					fmt.Fprintf(a.stdout, "source: live, %s, read %s ago (%s) by %s\n", out.URL,
						time.Since(live.FetchedAt).Round(time.Second), live.FetchedAt.Format(time.RFC3339), live.By)
				} else {
					fmt.Fprintln(a.stdout, "source: configured (MIMOQ_MODELS; no fresh live catalog published)")
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "MODEL\tMAX OUTPUT TOKENS")
				for _, m := range out.Models {
					limit := "-"
					if m.MaxOutputTokens > 0 {
						limit = strconv.Itoa(m.MaxOutputTokens)
					}
					fmt.Fprintf(tw, "%s\t%s\n", m.ID, limit)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object")
	return cmd
}
