package enqueue

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mimoq/mimoq/apiclient"
)

const fuzzGoodLine = `{"custom_id":"req-1","method":"POST","url":"/v1/chat/completions","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"Hi"}]}}`

// FuzzParseBatchLine checks one batch input line: every input gets either a
// parsed line or one short reason, and what is accepted is what
// encoding/json reads: a custom_id string within the limit and a body
// (byte for byte) that passes the request validation.
func FuzzParseBatchLine(f *testing.F) {
	for _, s := range []string{
		fuzzGoodLine,
		`{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled"}}}`,
		`{"custom_id":"a","body":"hello"}`,
		`{"custom_id":"a","body":[1]}`,
		`{"custom_id":7,"body":{}}`,
		`{"custom_id":null,"body":{}}`,
		`{"custom_id":"","body":{}}`,
		`{"custom_id":"a","bdy":{}}`,
		`{"custom_id":"a","method":"GET","body":{}}`,
		`{"custom_id":"a","url":"/v1/embeddings","body":{}}`,
		`{"custom_id":"a","body":null}`,
		`{"custom_id":"a","custom_id":"b","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`,
		`{"Custom_ID":"a","BODY":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`,
		`{"custom_id":"\ud800","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}`,
		`{} {}`,
		`[1,2]`,
		`"just a string"`,
		"{\"custom_id\":\"caf\xe9\"}",
		`{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}],"stream":true}}`,
		`{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[],"temperature":3}}`,
		`{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"x"}]}}` + strings.Repeat(" ", 10),
		`{"custom_id":"` + strings.Repeat("x", 600) + `","body":{}}`,
		`{"` + strings.Repeat("k", 2000) + `":1}`,
		"\xef\xbb\xbf" + fuzzGoodLine,
	} {
		f.Add([]byte(s))
	}
	models := apiclient.DefaultModels()
	f.Fuzz(func(t *testing.T, line []byte) {
		bl, f := parseBatchLine(line, models)
		reason := f.Reason
		if (bl == nil) == (reason == "") {
			t.Fatalf("parseBatchLine(%q) = %+v, %q: want a line or a reason", line, bl, reason)
		}
		if bl == nil {
			if strings.ContainsAny(reason, "\n\r") || !utf8.ValidString(reason) {
				t.Fatalf("reason %q is not one line of text", reason)
			}
			if len(reason) > maxReasonBytes+len("…") {
				t.Fatalf("reason is %d bytes long: %.200q…", len(reason), reason)
			}
			return
		}
		if !utf8.Valid(line) {
			t.Fatalf("accepted a line that is not UTF-8: %q", line)
		}
		if bl.CustomID == "" || len(bl.CustomID) > MaxCustomIDLength {
			t.Fatalf("accepted custom_id %q", bl.CustomID)
		}
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(line, &ref); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		for k := range ref {
			if k != "custom_id" && k != "body" && k != "method" && k != "url" {
				// A key in another case ("Custom_ID"): encoding/json matches
				// it case-insensitively, the last one winning, which a map
				// cannot tell; nothing exact to compare with.
				return
			}
		}
		var id string
		if err := json.Unmarshal(ref["custom_id"], &id); err != nil || id != bl.CustomID {
			t.Fatalf("custom_id %q, encoding/json says %q (%v)", bl.CustomID, id, err)
		}
		if !bytes.Equal(bytes.TrimSpace(ref["body"]), bytes.TrimSpace(bl.Body)) {
			t.Fatalf("body %q, encoding/json says %q", bl.Body, ref["body"])
		}
		req, err := apiclient.ParseRequest(bl.Body)
		if err != nil {
			t.Fatalf("accepted a body that does not parse: %v", err)
		}
		if err := models.Validate(req); err != nil || req.Model != bl.Model {
			t.Fatalf("accepted a body that does not validate (%v) or model %q != %q", err, req.Model, bl.Model)
		}
	})
}

// FuzzBatchScanner reads arbitrary files with a small line limit and checks
// the scanner against a plain reference: the same line numbers, a line
// reported too long exactly when it holds more than the limit before its
// line ending (\n or \r\n), blank lines skipped, and every other line
// judged as parseBatchLine judges it.
func FuzzBatchScanner(f *testing.F) {
	f.Add([]byte(fuzzGoodLine+"\n"), uint8(200))
	f.Add([]byte(fuzzGoodLine+"\r\n\r\n"+fuzzGoodLine), uint8(255))
	f.Add([]byte("abc\ndefg\r\nhi"), uint8(3))
	f.Add([]byte("abcd"), uint8(3))
	f.Add([]byte("abc\r\n"), uint8(3))
	f.Add([]byte("abc\r\r\n"), uint8(3))
	f.Add([]byte("\n\n  \n\t\n"), uint8(1))
	f.Add([]byte(strings.Repeat("x", 300)+"\n"+fuzzGoodLine), uint8(150))
	f.Add([]byte{}, uint8(0))
	models := apiclient.DefaultModels()
	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		maxLine := int(limit) + 1
		type got struct {
			line    int
			tooLong bool
			reason  string
		}
		var want []got
		segs := bytes.SplitAfter(data, []byte("\n"))
		for i, seg := range segs {
			if len(seg) == 0 && i == len(segs)-1 {
				break
			}
			content := bytes.TrimSuffix(seg, []byte("\n"))
			if len(content) < len(seg) {
				content = bytes.TrimSuffix(content, []byte("\r"))
			}
			switch {
			case len(content) > maxLine:
				want = append(want, got{line: i + 1, tooLong: true})
			case len(bytes.TrimSpace(content)) == 0:
			default:
				_, f := parseBatchLine(bytes.TrimRight(content, "\r\n"), models)
				want = append(want, got{line: i + 1, reason: f.Reason})
			}
		}

		sc := newBatchScanner(bytes.NewReader(data), models, maxLine)
		var have []got
		if err := sc.each(func(bl *BatchLine, f lineFault) error {
			reason := f.Reason
			g := got{line: bl.Line, reason: reason}
			if strings.HasPrefix(reason, "line is longer than") {
				g = got{line: bl.Line, tooLong: true}
			}
			have = append(have, g)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(have) != len(want) {
			t.Fatalf("scanner gave %d lines %+v, reference %d %+v", len(have), have, len(want), want)
		}
		for i := range want {
			if have[i] != want[i] {
				t.Fatalf("line %d: scanner %+v, reference %+v", i, have[i], want[i])
			}
		}
	})
}

// FuzzReadEnvelope: the quick envelope reader accepts, refuses and reads
// every line exactly as encoding/json does.
func FuzzReadEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"custom_id":"a","body":{"model":"m"}}`,
		`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"x":[1,"}"]}}`,
		`{"Custom_ID":"a","body":{}}`,
		`{"custom\u005fid":"a","body":{},"body":{"y":1}}`,
		`{"custom_id":1,"method":null,"body":"x"}`,
		`{"custom_id":"a","extra":1}`,
		`{"custom_id":"a"} {"b":1}`,
		`[1,2]`, `  {"url":"\u00e9\ud800","body":{}}  `, `{"method":"P\"OST"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, gotReason := readEnvelope(line)
		want, wantReason := decodeEnvelope(line)
		if gotReason != wantReason {
			t.Fatalf("%q: reason %q, encoding/json %q", line, gotReason, wantReason)
		}
		if wantReason.Reason != "" {
			return
		}
		if !bytes.Equal(got.CustomID, want.CustomID) || !bytes.Equal(got.Body, want.Body) ||
			got.Method != want.Method || got.URL != want.URL {
			t.Fatalf("%q: read %+v, encoding/json %+v", line, got, want)
		}
	})
}
