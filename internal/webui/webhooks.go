package webui

import (
	"errors"
	"net/http"
	"slices"

	"github.com/mimoq/mimoq/internal/webhooks"
)

// webhookStates are the states a delivery list can be filtered by.
var webhookStates = []string{webhooks.StatePending, webhooks.StateDelivered, webhooks.StateFailed, webhooks.StateGone}

// webhookList is GET /ui/webhooks[?state=S]: deliveries, newest first.
func (u *ui) webhookList(w http.ResponseWriter, r *http.Request, q *request) {
	state := r.URL.Query().Get("state")
	if state != "" && !slices.Contains(webhookStates, state) {
		u.fail(w, r, q, http.StatusBadRequest, "Unknown delivery state "+state+".")
		return
	}
	ds, _, err := u.webhookStore().List(r.Context(), state, "", 200)
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the webhook deliveries: "+err.Error())
		return
	}
	u.render(w, r, http.StatusOK, "webhooks", q, map[string]any{"Deliveries": ds, "State": state, "States": webhookStates})
}

// webhookShow is GET /ui/webhooks/{id}: one delivery, every attempt, its body.
func (u *ui) webhookShow(w http.ResponseWriter, r *http.Request, q *request) {
	d, err := u.webhookStore().Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, webhooks.ErrNotFound) {
		u.fail(w, r, q, http.StatusNotFound, "There is no delivery "+r.PathValue("id")+" (or its record expired).")
		return
	}
	if err != nil {
		u.fail(w, r, q, http.StatusInternalServerError, "Could not read the delivery: "+err.Error())
		return
	}
	u.render(w, r, http.StatusOK, "webhook", q, map[string]any{"D": d})
}

// webhookResend is POST /ui/webhooks/{id}/resend.
func (u *ui) webhookResend(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	if err := u.webhookStore().Resend(r.Context(), id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, webhooks.ErrNotFound) {
			status = http.StatusNotFound
		}
		u.fail(w, r, q, status, "Could not resend delivery "+id+": "+err.Error())
		return
	}
	u.cfg.Logger.Info().Str("delivery_id", id).Str("remote", r.RemoteAddr).Msg("web ui webhook resend")
	http.Redirect(w, r, withParams("/ui/webhooks/"+id, "done", "resent"), http.StatusSeeOther)
}

func (u *ui) webhookStore() *webhooks.Store { return webhooks.NewStore(u.cfg.Redis, 0) }
