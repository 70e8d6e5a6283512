package openaiapi

import (
	"net/http"
	"time"
)

// modelObject is OpenAI's Model object.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// catalogEpoch stands for the models' creation time, which the catalog does
// not know.
var catalogEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

func modelOf(name string) modelObject {
	return modelObject{ID: name, Object: "model", Created: catalogEpoch, OwnedBy: "xiaomi"}
}

// listModels is GET /models: the models the queue accepts.
func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	models, _, _, _ := a.cfg.Client.Catalog(r.Context())
	names := models.Names()
	out := make([]modelObject, 0, len(names))
	for _, n := range names {
		out = append(out, modelOf(n))
	}
	writeJSON(w, http.StatusOK, struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{"list", out})
}

// getModel is GET /models/{id}.
func (a *API) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	models, _, _, _ := a.cfg.Client.Catalog(r.Context())
	for _, n := range models.Names() {
		if n == id {
			writeJSON(w, http.StatusOK, modelOf(n))
			return
		}
	}
	writeError(w, http.StatusNotFound, "model_not_found", "The model "+quote(id)+" does not exist.", "model")
}
