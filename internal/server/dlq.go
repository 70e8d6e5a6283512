package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/ops"
)

// filterFields are the dead-letter filters, as query parameters of GET
// /v1/dlq and keys of the "filter" object of POST /v1/dlq/requeue; the
// same names as the flags of `mimoq dlq list`.
var filterFields = []string{"queue", "batch", "model", "code", "status", "class", "since", "until"}

// parseFilter builds a dlq.Filter from name/value pairs (get returns ""
// for an absent one) through dlq.ParseFilter, the one parser of filters.
func parseFilter(get func(string) string, now time.Time) (dlq.Filter, *fieldError) {
	f, err := dlq.ParseFilter(dlq.FilterInput{Queue: get("queue"), Batch: get("batch"), Model: get("model"),
		Code: get("code"), Status: get("status"), Class: get("class"), Since: get("since"), Until: get("until")}, now)
	var fe *dlq.FieldError
	if errors.As(err, &fe) {
		return f, &fieldError{param: fe.Field, message: fe.Error()}
	}
	return f, nil
}

// listDLQ is GET /v1/dlq: dead letters matching the query filters, newest
// first, without their request and history (GET /v1/dlq/{id} has them).
func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request) {
	q, ok := checkQuery(w, r, append(slices.Clone(filterFields), "limit", "cursor")...)
	if !ok {
		return
	}
	f, ferr := parseFilter(q.Get, time.Now())
	if ferr != nil {
		badRequest(w, r, ferr.param, ferr.message)
		return
	}
	limit, err := parseLimit(q.Get("limit"), dlq.DefaultListLimit)
	if err != nil {
		badRequest(w, r, "limit", err.Error())
		return
	}
	recs, next, err := s.cfg.DLQ.List(r.Context(), f, q.Get("cursor"), limit)
	if errors.Is(err, dlq.ErrBadCursor) {
		badRequest(w, r, "cursor", "cursor is not one this server gave out")
		return
	}
	if err != nil {
		s.internalError(w, r, "list dead letters", err)
		return
	}
	writeJSON(w, http.StatusOK, newPage(recs, next))
}

// getDLQ is GET /v1/dlq/{id}: one dead letter with its request and every
// attempt.
func (s *Server) getDLQ(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := s.cfg.DLQ.Get(r.Context(), id)
	switch {
	case errors.Is(err, dlq.ErrNotFound):
		notFound(w, r, "No dead letter "+quoteID(id)+".")
	case err != nil:
		s.internalError(w, r, "get dead letter", err)
	default:
		writeJSON(w, http.StatusOK, rec)
	}
}

// requeueRequest is the body of POST /v1/dlq/requeue.
type requeueRequest struct {
	sel      ops.Selection
	dryRun   bool
	setModel string
}

// parseRequeue reads {"ids": […]} or {"all": true, "filter": {…}}, with
// "dry_run" optional. Neither ids nor all is refused: requeueing every dead
// letter takes an explicit "all": true.
func parseRequeue(raw []byte, now time.Time) (requeueRequest, *fieldError) {
	var req requeueRequest
	members, ferr := parseObject(raw, "request body")
	if ferr != nil {
		return req, ferr
	}
	for _, k := range sortedKeys(members) {
		if !slices.Contains([]string{"ids", "all", "filter", "dry_run", "set_model"}, k) {
			return req, &fieldError{param: k, message: fmt.Sprintf("unknown field %q: the request takes ids, all, filter, dry_run and set_model", k)}
		}
	}
	if v, ok := members["set_model"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &req.setModel); err != nil {
			return req, &fieldError{param: "set_model", message: "set_model must be a model name (a string)"}
		}
	}
	if v, ok := members["ids"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &req.sel.IDs); err != nil {
			return req, &fieldError{param: "ids", message: "ids must be an array of dead-letter IDs (strings)"}
		}
		if i := slices.Index(req.sel.IDs, ""); i >= 0 {
			return req, &fieldError{param: "ids", message: fmt.Sprintf("ids[%d] is empty", i)}
		}
	}
	for name, dst := range map[string]*bool{"all": &req.sel.All, "dry_run": &req.dryRun} {
		if v, ok := members[name]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, dst); err != nil {
				return req, &fieldError{param: name, message: name + " must be true or false"}
			}
		}
	}
	switch {
	case req.sel.All && len(req.sel.IDs) > 0:
		return req, &fieldError{param: "all", message: "give ids or all: true, not both"}
	case !req.sel.All && len(req.sel.IDs) == 0:
		return req, &fieldError{param: "ids", message: `give the dead letters to requeue as "ids": […], or "all": true with an optional "filter"`}
	}
	if v, ok := members["filter"]; ok && string(v) != "null" {
		fm, ferr := parseObject(v, "filter")
		if ferr != nil {
			ferr.param = "filter"
			return req, ferr
		}
		vals := map[string]string{}
		for _, k := range sortedKeys(fm) {
			if !slices.Contains(filterFields, k) {
				return req, &fieldError{param: "filter." + k, message: fmt.Sprintf("unknown filter %q: filters are %s", k, strings.Join(filterFields, ", "))}
			}
			var sv string
			if err := json.Unmarshal(fm[k], &sv); err != nil {
				var n int
				if k != "status" || json.Unmarshal(fm[k], &n) != nil {
					return req, &fieldError{param: "filter." + k, message: "filter." + k + " must be a string"}
				}
				sv = strconv.Itoa(n)
			}
			vals[k] = sv
		}
		f, ferr := parseFilter(func(k string) string { return vals[k] }, now)
		if ferr != nil {
			ferr.param = "filter." + ferr.param
			ferr.message = "filter." + ferr.message
			return req, ferr
		}
		req.sel.Filter = f
	}
	return req, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// requeueResponse is the answer of POST /v1/dlq/requeue.
type requeueResponse struct {
	Matched  int      `json:"matched"`
	Requeued int      `json:"requeued"`
	NotDead  []string `json:"not_dead"`
	DryRun   bool     `json:"dry_run"`
}

// requeueDLQ is POST /v1/dlq/requeue: requeue dead letters with a fresh
// attempt budget.
func (s *Server) requeueDLQ(w http.ResponseWriter, r *http.Request) {
	if _, ok := checkQuery(w, r); !ok {
		return
	}
	raw, ok := readBody(w, r, s.cfg.MaxJobBytes)
	if !ok {
		return
	}
	req, ferr := parseRequeue(raw, time.Now())
	if ferr != nil {
		badRequest(w, r, ferr.param, ferr.message)
		return
	}
	if req.setModel != "" {
		models, _, _, err := s.cfg.Client.Catalog(r.Context())
		if err != nil {
			s.internalError(w, r, "read the model catalog", err)
			return
		}
		if _, ok := models.Lookup(req.setModel); !ok {
			badRequest(w, r, "set_model", fmt.Sprintf("set_model %q is not one of %s", req.setModel, strings.Join(models.Names(), ", ")))
			return
		}
	}
	// A bulk requeue may take a while: it finishes even if the client
	// leaves (it is idempotent, but half-done is a surprise), and the
	// answer gets a fresh write deadline after it.
	res, err := s.cfg.Ops.Requeue(context.WithoutCancel(r.Context()), req.sel,
		ops.Options{DryRun: req.dryRun, SetModel: req.setModel})
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if errors.Is(err, ops.ErrNoSelection) {
		badRequest(w, r, "ids", err.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, "requeue dead letters", err)
		return
	}
	zerolog.Ctx(r.Context()).Info().Int("matched", res.Matched).Int("requeued", res.Done).
		Int("not_dead", len(res.NotDead)).Bool("dry_run", res.DryRun).Msg("dead letters requeued")
	out := requeueResponse{Matched: res.Matched, Requeued: res.Done, NotDead: res.NotDead, DryRun: res.DryRun}
	if out.NotDead == nil {
		out.NotDead = []string{}
	}
	writeJSON(w, http.StatusOK, out)
}
