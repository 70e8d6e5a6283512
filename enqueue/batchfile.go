package enqueue

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/internal/job"
	"github.com/mimoq/mimoq/internal/jsonscan"
)

// Limits of a batch input file.
const (
	// DefaultMaxLineBytes is the longest line accepted: room for requests
	// that carry images or audio as base64.
	DefaultMaxLineBytes = job.DefaultMaxLineBytes
	// MaxCustomIDLength is the longest custom_id accepted.
	MaxCustomIDLength = 512
)

// lineEnvelope is one line of the OpenAI Batch input format. Unknown fields
// are refused: a typo such as "custom-id" must not pass silently.
type lineEnvelope struct {
	CustomID json.RawMessage `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// batchScanner reads a batch file line by line without loading it whole.
type batchScanner struct {
	r       *bufio.Reader
	parse   func(line []byte) (*BatchLine, lineFault)
	maxLine int
	sum     hash.Hash
	lineNo  int
	buf     []byte
}

func newBatchScanner(r io.Reader, models apiclient.Models, maxLine int) *batchScanner {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	s := &batchScanner{maxLine: maxLine, sum: sha256.New()}
	// Without models it is a submit's second pass, over lines the first
	// one validated.
	s.parse = parseEnqueuedLine
	if models != nil {
		s.parse = func(line []byte) (*BatchLine, lineFault) { return parseBatchLine(line, models) }
	}
	s.r = bufio.NewReaderSize(io.TeeReader(r, s.sum), 256<<10)
	return s
}

// scanChunk is how many lines go to a parsing goroutine at a time.
const scanChunk = 256

// chunk is a run of consecutive non-blank lines, parsed off the reading
// goroutine.
type chunk struct {
	raw    [][]byte // the lines (nil for one too long), dropped once parsed
	lines  []*BatchLine
	faults []lineFault
	done   chan struct{}
}

// each reads the file and calls fn with every non-blank line, in file order:
// the parsed line, or why it is invalid. Parsing (most of the work)
// runs on every core. It returns fn's first error, or the reader's; nil at
// the end of the file.
func (s *batchScanner) each(fn func(bl *BatchLine, f lineFault) error) error {
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *chunk, workers)
	order := make(chan *chunk, 2*workers)
	stop := make(chan struct{})
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() { // reader: lines in order, chunk by chunk
		defer close(work)
		defer close(order)
		c := &chunk{done: make(chan struct{})}
		send := func() bool {
			select {
			case <-stop: // first: the collector drains order after a stop
				return false
			default:
			}
			select {
			case order <- c:
			case <-stop:
				return false
			}
			work <- c
			c = &chunk{done: make(chan struct{})}
			return true
		}
		for {
			line, tooLong, err := s.readLine()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				if len(c.lines) > 0 {
					send()
				}
				return
			}
			s.lineNo++
			switch {
			case tooLong:
				c.raw = append(c.raw, nil)
				c.lines = append(c.lines, &BatchLine{Line: s.lineNo})
				c.faults = append(c.faults, lineFault{Code: CodeLineTooLong, Reason: fmt.Sprintf("line is longer than %d bytes", s.maxLine)})
			case len(bytes.TrimSpace(line)) == 0:
				continue
			default:
				c.raw = append(c.raw, bytes.Clone(line))
				c.lines = append(c.lines, &BatchLine{Line: s.lineNo})
				c.faults = append(c.faults, lineFault{})
			}
			if len(c.lines) == scanChunk && !send() {
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for c := range work {
				for i, raw := range c.raw {
					if raw == nil {
						continue
					}
					bl, f := s.parse(raw)
					if bl != nil {
						bl.Line = c.lines[i].Line
						c.lines[i] = bl
					}
					c.faults[i] = f
				}
				c.raw = nil
				close(c.done)
			}
		})
	}

	var err error
	for c := range order {
		<-c.done
		for i, bl := range c.lines {
			if err = fn(bl, c.faults[i]); err != nil {
				break
			}
		}
		if err != nil {
			close(stop)
			for range order { // let the reader and the parsers finish
			}
			break
		}
	}
	wg.Wait()
	if err != nil {
		return err
	}
	return readErr
}

// readLine reads one line without its newline. A line that holds more than
// maxLine bytes before its line ending (\n or \r\n, which do not count, so
// that the limit is the same for files from every system, last line
// included) is skipped to its end and reported as too long.
func (s *batchScanner) readLine() ([]byte, bool, error) {
	s.buf = s.buf[:0]
	tooLong := false
	for {
		chunk, err := s.r.ReadSlice('\n')
		if !tooLong {
			if len(s.buf)+len(chunk) > s.maxLine+len("\r\n") {
				tooLong = true
				s.buf = s.buf[:0]
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(s.buf) == 0 && !tooLong:
			return nil, false, io.EOF
		case err == nil, errors.Is(err, io.EOF):
			content := bytes.TrimSuffix(s.buf, []byte("\n"))
			if len(content) < len(s.buf) {
				content = bytes.TrimSuffix(content, []byte("\r"))
			}
			tooLong = tooLong || len(content) > s.maxLine
			return bytes.TrimRight(content, "\r"), tooLong, nil
		default:
			return nil, false, err
		}
	}
}

// maxReasonBytes caps the reason given for one invalid line: it may quote
// what the line holds (an unknown field's name, a method), which can be
// megabytes long.
const maxReasonBytes = 300

// parseBatchLine checks one line; on failure it says why: a code and one
// sentence naming the field, at most about maxReasonBytes long.
func parseBatchLine(line []byte, models apiclient.Models) (*BatchLine, lineFault) {
	bl, f := parseLine(line, models)
	f.Reason = truncate(f.Reason, maxReasonBytes)
	return bl, f
}

func parseLine(line []byte, models apiclient.Models) (*BatchLine, lineFault) {
	if !utf8.Valid(line) {
		return nil, lineFault{Code: CodeInvalidJSONLine, Reason: "line is not valid UTF-8"}
	}
	env, f := readEnvelope(line)
	if f.Reason != "" {
		return nil, f
	}
	if len(env.CustomID) == 0 || string(env.CustomID) == "null" {
		return nil, lineFault{Code: CodeMissingParameter, Param: "custom_id", Reason: "custom_id is missing"}
	}
	var customID string
	if err := json.Unmarshal(env.CustomID, &customID); err != nil {
		return nil, lineFault{Code: CodeInvalidCustomID, Param: "custom_id", Reason: "custom_id must be a string"}
	}
	switch {
	case customID == "":
		return nil, lineFault{Code: CodeInvalidCustomID, Param: "custom_id", Reason: "custom_id is empty"}
	case len(customID) > MaxCustomIDLength:
		return nil, lineFault{Code: CodeInvalidCustomID, Param: "custom_id",
			Reason: fmt.Sprintf("custom_id is %d bytes long; at most %d are allowed", len(customID), MaxCustomIDLength)}
	}
	if env.Method != "" && env.Method != "POST" {
		return nil, lineFault{Code: CodeInvalidMethod, Param: "method", Reason: fmt.Sprintf("method %q is not supported; want POST", env.Method)}
	}
	if env.URL != "" && env.URL != "/v1/chat/completions" && env.URL != "/chat/completions" {
		return nil, lineFault{Code: CodeInvalidURL, Param: "url", Reason: fmt.Sprintf("url %q is not supported; want /v1/chat/completions", env.URL)}
	}
	if len(env.Body) == 0 || string(env.Body) == "null" {
		return nil, lineFault{Code: CodeMissingParameter, Param: "body", Reason: "body is missing"}
	}
	req, err := apiclient.ParseRequest(env.Body)
	if err != nil {
		return nil, bodyFault(err)
	}
	if err := models.Validate(req); err != nil {
		return nil, bodyFault(err)
	}
	return &BatchLine{CustomID: customID, Body: bytes.Clone(env.Body), Model: req.Model}, lineFault{}
}

// bodyFault is the fault of a line whose body the API would refuse; an
// unknown model has a code of its own.
func bodyFault(err error) lineFault {
	f := lineFault{Code: CodeInvalidBody, Param: "body", Reason: "body: " + err.Error()}
	var ve *apiclient.ValidationError
	if errors.As(err, &ve) && ve.Field != "" {
		f.Param = "body." + ve.Field
		if ve.Field == "model" {
			f.Code = CodeModelNotFound
		}
	}
	return f
}

// errSlowPath sends a line to encoding/json, whose error names the problem.
var errSlowPath = errors.New("not the plain envelope")

// readEnvelope decodes a line's envelope: with one validity scan and a walk
// over its members when the line is valid JSON holding only the known
// fields, as strings where strings are expected; through encoding/json
// otherwise, which accepts or refuses it the same way and says why.
func readEnvelope(line []byte) (lineEnvelope, lineFault) {
	var env lineEnvelope
	if json.Valid(line) {
		err := jsonscan.Members(line, func(key string, val []byte) error {
			switch key {
			case "custom_id":
				env.CustomID = val
			case "body":
				env.Body = val
			case "method", "url":
				if val[0] != '"' {
					return errSlowPath
				}
				v, err := jsonscan.String(val)
				if err != nil {
					return err
				}
				if key == "method" {
					env.Method = v
				} else {
					env.URL = v
				}
			default:
				return errSlowPath
			}
			return nil
		})
		if err == nil {
			return env, lineFault{}
		}
	}
	return decodeEnvelope(line)
}

// decodeEnvelope is readEnvelope through encoding/json alone.
func decodeEnvelope(line []byte) (lineEnvelope, lineFault) {
	var env lineEnvelope
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return env, jsonFault(err)
	}
	if dec.More() {
		return env, lineFault{Code: CodeInvalidJSONLine, Reason: "invalid JSON: more than one value on the line"}
	}
	return env, lineFault{}
}

// parseEnqueuedLine reads what the second pass of a submit needs from a
// line the first pass validated: its custom_id and body. The model comes
// from the first pass; a file changed in between fails its checksum.
func parseEnqueuedLine(line []byte) (*BatchLine, lineFault) {
	var bl BatchLine
	err := jsonscan.Members(line, func(key string, val []byte) error {
		switch {
		case key == "custom_id" && val[0] == '"':
			s, err := jsonscan.String(val)
			bl.CustomID = s
			return err
		case key == "body":
			bl.Body = bytes.Clone(val)
		}
		return nil
	})
	if err != nil || bl.CustomID == "" || len(bl.Body) == 0 || bl.Body[0] != '{' {
		return nil, lineFault{Code: CodeInvalidJSONLine, Reason: "it is not the line the first pass read"}
	}
	return &bl, lineFault{}
}

// jsonFault says why encoding/json refused a line, in a short reason.
func jsonFault(err error) lineFault {
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return lineFault{Code: CodeUnknownParameter, Param: strings.Trim(name, `"`),
			Reason: msg + " in the batch line (allowed: custom_id, method, url, body)"}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return lineFault{Code: CodeInvalidJSONLine, Reason: fmt.Sprintf("invalid JSON: %s (at byte %d)", msg, se.Offset)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return lineFault{Code: CodeInvalidJSONLine, Reason: "invalid JSON: the line ends in the middle of a value"}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return lineFault{Code: CodeInvalidJSONLine, Reason: "the line is not a JSON object"}
		}
		return lineFault{Code: CodeInvalidParameter, Param: te.Field, Reason: fmt.Sprintf("%s must be a %s", te.Field, te.Type.Kind())}
	}
	return lineFault{Code: CodeInvalidJSONLine, Reason: msg}
}

// Error lists the invalid lines as FILE:LINE: reason, the first
// MaxLineErrors of them and then how many more.
func (e *BatchFileError) Error() string {
	var b strings.Builder
	for i, le := range e.Errors {
		if i > 0 {
			b.WriteByte('\n')
		}
		if le.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.Name, le.Line, le.Reason)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.Name, le.Reason)
		}
	}
	if more := e.Count - len(e.Errors); more > 0 {
		fmt.Fprintf(&b, "\n%s: %d more invalid lines", e.Name, more)
	}
	if e.Count > 0 {
		fmt.Fprintf(&b, "\n%s: %d invalid lines; nothing was enqueued", e.Name, e.Count)
	}
	return b.String()
}

func (e *BatchFileError) add(line int, f lineFault, keep int) {
	e.Count++
	if len(e.Errors) < keep {
		e.Errors = append(e.Errors, LineError{Line: line, Code: f.Code, Param: f.Param, Reason: f.Reason})
	}
}

// lineFault is why a line is invalid; the zero value is a valid line.
type lineFault struct{ Code, Param, Reason string }
