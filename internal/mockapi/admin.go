package mockapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal_error","message":"encode response","type":"error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// apiFailure answers an API route other than chat completions with an error
// and counts it.
func (s *Server) apiFailure(w http.ResponseWriter, e *apiError) {
	set, st := s.set.Load(), s.st.Load()
	rng := newStream(set.seed, "", st.seq.Add(1))
	writeError(w, e, shapeFor(set.shape, e.status, &rng), set.shape == ShapeMixed, s.clock(), &rng)
	st.countStatus(e.status)
}

// handleModels lists the served models not retired, as GET /v1/models of an
// OpenAI-compatible API.
func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method != http.MethodGet:
		s.apiFailure(w, &apiError{status: http.StatusMethodNotAllowed, code: codeInvalidRequest,
			message: fmt.Sprintf("Method %s is not allowed on %s: use GET.", r.Method, r.URL.Path)})
		return
	case !authorized(r, s.set.Load().key):
		s.apiFailure(w, &apiError{status: http.StatusUnauthorized, code: codeAuthFailed, message: "Invalid API Key provided."})
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	// MiMo V2.6 was published on 2026-09-22.
	created := time.Date(2026, 9, 22, 0, 0, 0, 0, time.UTC).Unix()
	retired := s.set.Load().retired
	for _, m := range s.modelNames {
		if !retired[m] {
			list.Data = append(list.Data, model{ID: m, Object: "model", Created: created, OwnedBy: "xiaomi"})
		}
	}
	s.st.Load().countStatus(http.StatusOK)
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleUnknown(w http.ResponseWriter, r *http.Request) {
	s.apiFailure(w, &apiError{status: http.StatusNotFound, code: codeNotFound,
		message: fmt.Sprintf("Unknown request URL: %s %s.", r.Method, r.URL.Path)})
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request) {
	log, ok := s.Job(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, wrappedError{Error: errorObject{Code: codeNotFound, Type: "error",
			Message: "No call was made for job " + r.PathValue("id") + "."}})
		return
	}
	writeJSON(w, http.StatusOK, log)
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGetConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Settings())
}

func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	var u Update
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		writeJSON(w, http.StatusBadRequest, wrappedError{Error: errorObject{Code: codeInvalidRequest, Type: "error",
			Message: "Invalid mock config: " + err.Error()}})
		return
	}
	if err := s.Update(u); err != nil {
		writeJSON(w, http.StatusBadRequest, wrappedError{Error: errorObject{Code: codeInvalidRequest, Type: "error",
			Message: "Invalid mock config: " + err.Error()}})
		return
	}
	writeJSON(w, http.StatusOK, s.Settings())
}
