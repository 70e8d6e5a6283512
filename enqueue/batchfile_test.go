package enqueue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/mimoq/mimoq/apiclient"
)

// scanFile is a batch file of n lines mixing valid, invalid, blank and too
// long ones, so that results from many chunks must come back in order.
func scanFile(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		switch i % 7 {
		case 3:
			b.WriteString("   \r\n")
		case 4:
			fmt.Fprintf(&b, `{"custom_id":"r%d","body":{"model":"nope","messages":[{"role":"user","content":"q"}]}}`+"\n", i)
		case 5:
			b.WriteString(strings.Repeat("x", 300) + "\n")
		default:
			fmt.Fprintf(&b, `{"custom_id":"r%d","body":{"model":"mimo-v2.6-flash","messages":[{"role":"user","content":"q%d"}]}}`+"\r\n", i, i)
		}
	}
	return b.Bytes()
}

func TestScannerEachKeepsFileOrder(t *testing.T) {
	t.Parallel()
	models := apiclient.DefaultModels()
	data := scanFile(10*scanChunk + 17)
	type line struct {
		n        int
		customID string
		reason   string
	}
	var want []line
	for i, raw := range strings.Split(string(data), "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		switch {
		case strings.TrimSpace(raw) == "":
		case len(raw) > 200:
			want = append(want, line{n: i + 1, reason: "line is longer than 200 bytes"})
		default:
			bl, f := parseBatchLine([]byte(raw), models)
			l := line{n: i + 1, reason: f.Reason}
			if bl != nil {
				l.customID = bl.CustomID
			}
			want = append(want, l)
		}
	}
	var have []line
	err := newBatchScanner(bytes.NewReader(data), models, 200).each(func(bl *BatchLine, f lineFault) error {
		have = append(have, line{n: bl.Line, customID: bl.CustomID, reason: f.Reason})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(have) != len(want) {
		t.Fatalf("%d lines, want %d", len(have), len(want))
	}
	for i := range want {
		if have[i] != want[i] {
			t.Fatalf("line %d: %+v, want %+v", i, have[i], want[i])
		}
	}
}

// countingSource counts what the scanner read.
type countingSource struct {
	r    io.Reader
	read int
}

func (c *countingSource) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func TestScannerEachStopsOnError(t *testing.T) {
	t.Parallel()
	data := scanFile(100_000)
	src := &countingSource{r: bytes.NewReader(data)}
	stop := errors.New("stop here")
	calls := 0
	err := newBatchScanner(src, apiclient.DefaultModels(), 0).each(func(*BatchLine, lineFault) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 10 {
		t.Fatalf("each = %v after %d calls; want the callback's error after 10", err, calls)
	}
	if src.read > len(data)/2 {
		t.Fatalf("read %d of %d bytes after the callback stopped the scan", src.read, len(data))
	}
}

// failingSource fails after its data.
type failingSource struct{ r io.Reader }

var errDisk = errors.New("disk on fire")

func (f failingSource) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errDisk
	}
	return n, err
}

func TestScannerEachReportsReadErrors(t *testing.T) {
	t.Parallel()
	data := scanFile(3 * scanChunk)
	calls := 0
	err := newBatchScanner(failingSource{bytes.NewReader(data)}, apiclient.DefaultModels(), 0).each(func(*BatchLine, lineFault) error {
		calls++
		return nil
	})
	if !errors.Is(err, errDisk) {
		t.Fatalf("each = %v; want the read error", err)
	}
	if calls == 0 {
		t.Fatal("no line was handed over before the read error")
	}
}

func TestParseBatchLineNamesTheFault(t *testing.T) {
	models := apiclient.DefaultModels()
	const msgs = `"messages":[{"role":"user","content":"q"}]`
	for _, tc := range []struct {
		line        string
		code, param string
	}{
		{`{"custom_id":"a","body":{"model":"mimo-v2.6-flash",` + msgs + `}}`, "", ""},
		{"\xff", CodeInvalidJSONLine, ""},
		{`{"custom_id":"a",`, CodeInvalidJSONLine, ""},
		{`[1]`, CodeInvalidJSONLine, ""},
		{`{"body":{}}`, CodeMissingParameter, "custom_id"},
		{`{"custom_id":"a"}`, CodeMissingParameter, "body"},
		{`{"custom_id":7,"body":{}}`, CodeInvalidCustomID, "custom_id"},
		{`{"custom_id":"","body":{}}`, CodeInvalidCustomID, "custom_id"},
		{`{"custom_id":"a","method":"GET","body":{}}`, CodeInvalidMethod, "method"},
		{`{"custom_id":"a","url":"/v1/embeddings","body":{}}`, CodeInvalidURL, "url"},
		{`{"custom_id":"a","method":5,"body":{}}`, CodeInvalidParameter, "method"},
		{`{"custom_id":"a","extra":1,"body":{}}`, CodeUnknownParameter, "extra"},
		{`{"custom_id":"a","body":{"model":"mimo-v2-flash",` + msgs + `}}`, CodeModelNotFound, "body.model"},
		{`{"custom_id":"a","body":{"model":"mimo-v2.6-flash","messages":[{"role":"robot","content":"q"}]}}`, CodeInvalidBody, "body.messages[0].role"},
		{`{"custom_id":"a","body":"text"}`, CodeInvalidBody, "body"},
	} {
		bl, f := parseBatchLine([]byte(tc.line), models)
		if f.Code != tc.code || f.Param != tc.param {
			t.Errorf("%s: code %q param %q (%s), want %q %q", tc.line, f.Code, f.Param, f.Reason, tc.code, tc.param)
		}
		if (bl == nil) != (tc.code != "") {
			t.Errorf("%s: line %v with code %q", tc.line, bl, f.Code)
		}
	}
}
