package apiclient

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// largeImageBody is a request with an 8 MiB base64 image, the shape that
// makes copies expensive.
func largeImageBody() []byte {
	return []byte(`{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},` +
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 8<<20) + `"}}]}],"thinking":{"type":"enabled"}}`)
}

func BenchmarkParseRequestLargeImage(b *testing.B) {
	raw := largeImageBody()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r, err := ParseRequest(raw)
		if err != nil {
			b.Fatal(err)
		}
		_ = r.EstimatePromptTokens()
	}
}

func BenchmarkParseRequestManyMessages(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"mimo-v2.6-pro","messages":[`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"role":"user","content":"message number ` + strconv.Itoa(i) + `"}`)
	}
	sb.WriteString(`]}`)
	raw := []byte(sb.String())
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r, err := ParseRequest(raw)
		if err != nil {
			b.Fatal(err)
		}
		r.Messages = r.Messages[1:]
		if _, err := r.body(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewAPIError(b *testing.B) {
	body := []byte(`{"error":{"code":"429","message":"Too many requests","type":"limitation","param":null}}`)
	for b.Loop() {
		_ = newAPIError(429, nil, body, testKey, time.Time{})
	}
}
