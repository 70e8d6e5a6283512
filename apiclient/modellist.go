package apiclient

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ModelInfo is one entry of GET /models, in the OpenAI list shape
// {"object":"list","data":[{"id":…,"object":"model","created":…,"owned_by":…}]}.
type ModelInfo struct {
	// ID is the model name requests use, e.g. "mimo-v2.6-flash".
	ID string `json:"id"`
	// Object is "model".
	Object string `json:"object"`
	// Created is when the model was published, in Unix seconds; 0 when not said.
	Created int64 `json:"created"`
	// OwnedBy is the model's owner, e.g. "xiaomi".
	OwnedBy string `json:"owned_by"`
}

// ModelIDs returns the IDs of list in order, e.g. for [CatalogFrom].
func ModelIDs(list []ModelInfo) []string {
	ids := make([]string, len(list))
	for i, m := range list {
		ids[i] = m.ID
	}
	return ids
}

// parseModelList reads a 2xx GET /models body, as leniently as
// parseResponse reads a completion: fields of an unexpected type are left
// zero, but the body must be an object with a data array.
func parseModelList(status int, requestID string, data []byte) ([]ModelInfo, error) {
	trimmed := bytes.TrimSpace(data)
	malformed := func(reason string) error {
		return &MalformedResponseError{StatusCode: status, RequestID: requestID, Reason: reason, Size: len(data)}
	}
	if len(trimmed) == 0 {
		return nil, malformed("empty body")
	}
	if trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return nil, malformed("not a JSON object")
		}
		return nil, malformed("not JSON")
	}
	var wire struct {
		Data *[]ModelInfo `json:"data"`
	}
	if err := json.Unmarshal(trimmed, &wire); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, malformed("invalid or truncated JSON")
		}
	}
	if wire.Data == nil {
		return nil, malformed("missing data")
	}
	out := make([]ModelInfo, 0, len(*wire.Data))
	for _, m := range *wire.Data {
		if m.ID != "" {
			out = append(out, m)
		}
	}
	return out, nil
}
