package apiclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxErrorBodyBytes caps the read of a non-2xx body: an error worth reading is
// small, and a proxy's page is not worth megabytes of memory.
const maxErrorBodyBytes = 1 << 20

// Client calls POST {BaseURL}/chat/completions and GET {BaseURL}/models. It
// is safe for concurrent use.
type Client struct {
	endpoint       string
	modelsURL      string
	apiKey         string
	keyHostHint    string // for 401s; "" when the key fits the host
	authStyle      AuthStyle
	models         Models
	requestTimeout time.Duration
	maxBody        int64
	userAgent      string
	http           *http.Client
	now            func() time.Time
}

// New returns a client configured by opts, after filling in defaults and
// checking them. The error never contains the API key.
func New(opts Options) (*Client, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("apiclient: %w", err)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment,
				DialContext: (&net.Dialer{
					Timeout:   o.DialTimeout,
					KeepAlive: 30 * time.Second,
				}).DialContext,
				ForceAttemptHTTP2:     true,
				TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
				ResponseHeaderTimeout: o.ResponseHeaderTimeout,
				ExpectContinueTimeout: time.Second,
				MaxIdleConns:          DefaultMaxIdleConnsPerHost,
				MaxIdleConnsPerHost:   DefaultMaxIdleConnsPerHost,
				IdleConnTimeout:       90 * time.Second,
			},
			// A redirect means a misconfigured BaseURL; following one would turn
			// the POST into a GET or leak the key to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	base := strings.TrimRight(o.BaseURL, "/")
	return &Client{
		endpoint:       base + "/chat/completions",
		modelsURL:      base + "/models",
		apiKey:         o.APIKey,
		keyHostHint:    KeyHostHint(o.BaseURL, o.APIKey),
		authStyle:      o.AuthStyle,
		models:         o.Models,
		requestTimeout: o.RequestTimeout,
		maxBody:        o.MaxResponseBytes,
		userAgent:      o.UserAgent,
		http:           hc,
		now:            time.Now,
	}, nil
}

// CallOption changes one call of [Client.Do].
type CallOption func(*callConfig)

type callConfig struct {
	headers []header
	models  Models
}

type header struct{ key, value string }

// WithModels validates this call's request against models instead of the
// client's Options.Models: a catalogue that changes while the client lives
// (the live one a worker reads from GET /models).
func WithModels(models Models) CallOption {
	return func(c *callConfig) { c.models = models }
}

// WithHeader sends an extra header with this call, e.g. X-Mimoq-Job-Id. The
// headers the client owns (Authorization or api-key, Content-Type, Accept,
// User-Agent) cannot be overridden. A second WithHeader for the same key
// replaces the first.
func WithHeader(key, value string) CallOption {
	return func(c *callConfig) { c.headers = append(c.headers, header{key, value}) }
}

// Validate checks req against the client's models without sending it; it
// returns nil or a [*ValidationError]. Do calls it first.
func (c *Client) Validate(req *Request) error { return c.models.Validate(req) }

// CloseIdleConnections closes the idle keep-alive connections of the client's
// transport, e.g. on shutdown.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Do sends req once and returns the parsed response. It never retries.
//
// A request that fails validation is not sent: Do returns a [*ValidationError].
// Otherwise the error is an [*APIError] (non-2xx), a [*MalformedResponseError] or
// [*ResponseTooLargeError] (unusable 2xx) or a [*TransportError] (no response);
// [Classify] says what to do with it. When ctx ends, the error wraps ctx.Err();
// when the client's own RequestTimeout fires, it wraps [ErrAttemptTimeout] and
// not context.DeadlineExceeded, so the two can be told apart.
func (c *Client) Do(ctx context.Context, req *Request, opts ...CallOption) (*Response, error) {
	cfg, err := newCallConfig(opts)
	if err != nil {
		return nil, err
	}
	models := c.models
	if cfg.models != nil {
		models = cfg.models
	}
	if err := models.Validate(req); err != nil {
		return nil, err
	}
	body, err := req.body()
	if err != nil {
		return nil, err
	}
	status, requestID, data, err := c.send(ctx, http.MethodPost, c.endpoint, body, cfg.headers)
	if err != nil {
		return nil, err
	}
	return parseResponse(status, requestID, data, c.apiKey)
}

// ModelsURL is the URL ListModels reads, {BaseURL}/models.
func (c *Client) ModelsURL() string { return c.modelsURL }

// ListModels reads GET {BaseURL}/models, the models the key may use, in the
// API's order. Like [Client.Do] it makes one attempt, with the same
// authentication, timeout and typed errors: an [*APIError] for a non-2xx, a
// [*MalformedResponseError] for a 2xx that is not an OpenAI model list, a
// [*TransportError] when there is no response. Entries without an ID are
// left out.
func (c *Client) ListModels(ctx context.Context, opts ...CallOption) ([]ModelInfo, error) {
	cfg, err := newCallConfig(opts)
	if err != nil {
		return nil, err
	}
	status, requestID, data, err := c.send(ctx, http.MethodGet, c.modelsURL, nil, cfg.headers)
	if err != nil {
		return nil, err
	}
	return parseModelList(status, requestID, data)
}

func newCallConfig(opts []CallOption) (callConfig, error) {
	var cfg callConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	for _, h := range cfg.headers {
		if err := checkHeader(h.key, h.value); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// send makes one HTTP exchange within the client's attempt timeout and
// returns a 2xx's status, request ID and body, or the typed error of
// anything else. body nil sends none.
func (c *Client) send(ctx context.Context, method, url string, body []byte, headers []header) (int, string, []byte, error) {
	actx, cancel := context.WithTimeoutCause(ctx, c.requestTimeout, ErrAttemptTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(actx, method, url, rd)
	if err != nil {
		return 0, "", nil, &TransportError{Op: "build request", Err: unwrapURLError(err)}
	}
	for _, h := range headers {
		hreq.Header.Set(h.key, h.value)
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	} else {
		hreq.Header.Del("Content-Type")
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", c.userAgent)
	hreq.Header.Del("Authorization")
	hreq.Header.Del("Api-Key")
	if c.authStyle == AuthAPIKey {
		hreq.Header.Set("Api-Key", c.apiKey)
	} else {
		hreq.Header.Set("Authorization", "Bearer "+c.apiKey)
	}

	resp, err := c.http.Do(hreq)
	if err != nil {
		return 0, "", nil, c.transportError(ctx, actx, "send request", err)
	}
	defer closeBody(resp.Body)
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	limit := c.maxBody
	if !ok {
		limit = min(limit, maxErrorBodyBytes)
	}
	data, tooLarge, readErr := readCapped(resp.Body, resp.ContentLength, limit)
	requestID := cleanText(resp.Header.Get("X-Request-Id"), c.apiKey, maxShortLen)

	if !ok {
		if readErr != nil && ctx.Err() != nil {
			return 0, "", nil, c.transportError(ctx, actx, "read error body", readErr)
		}
		// The status is the server's verdict even if its body could not be read
		// whole: report it, with what was read.
		return 0, "", nil, c.apiError(resp, data)
	}
	if readErr != nil {
		return 0, "", nil, c.transportError(ctx, actx, "read response body", readErr)
	}
	if tooLarge {
		return 0, "", nil, &ResponseTooLargeError{StatusCode: resp.StatusCode, RequestID: requestID, Limit: c.maxBody}
	}
	return resp.StatusCode, requestID, data, nil
}

// apiError builds the error of a non-2xx response, with the key/host hint
// on a 401: MiMo answers a key sent to the wrong kind of host as it answers a
// wrong key.
func (c *Client) apiError(resp *http.Response, data []byte) *APIError {
	e := newAPIError(resp.StatusCode, resp.Header, data, c.apiKey, c.now())
	if resp.StatusCode == http.StatusUnauthorized {
		e.Hint = c.keyHostHint
	}
	return e
}

// transportError wraps a failure that left no usable response, keeping the
// invariant Classify relies on: the error matches context.Canceled or
// context.DeadlineExceeded only when the caller's ctx ended.
func (c *Client) transportError(ctx, actx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		cause := ctx.Err()
		if cc := context.Cause(ctx); cc != nil && cc != cause {
			cause = fmt.Errorf("%w: %w", cause, cc)
		}
		return &TransportError{Op: op, Err: cause}
	}
	if actx.Err() != nil {
		return &TransportError{Op: op, Err: fmt.Errorf("%w after %s", ErrAttemptTimeout, c.requestTimeout)}
	}
	err = unwrapURLError(err)
	if errors.Is(err, context.DeadlineExceeded) {
		// A custom HTTPClient's Timeout: the attempt's limit, not the caller's.
		return &TransportError{Op: op, Err: fmt.Errorf("%w: %s", ErrAttemptTimeout, err.Error())}
	}
	return &TransportError{Op: op, Err: err}
}

// unwrapURLError drops net/http's *url.Error wrapper: its message repeats the
// method and URL, which TransportError.Op already says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// readCapped reads at most limit bytes; tooLarge reports that there was more.
// contentLength only sizes the first allocation, and only up to a point: it is
// the server's claim, not a fact.
func readCapped(r io.Reader, contentLength, limit int64) (data []byte, tooLarge bool, err error) {
	const maxHint = 16 << 20
	var buf bytes.Buffer
	if contentLength > 0 {
		buf.Grow(int(min(contentLength, limit, maxHint)) + 1)
	}
	n := limit
	if n < math.MaxInt64 {
		n++ // one byte more tells "exactly limit" from "over limit"
	}
	_, err = buf.ReadFrom(io.LimitReader(r, n))
	data = buf.Bytes()
	if int64(len(data)) > limit {
		return data[:limit], true, err
	}
	return data, false, err
}

// closeBody drains a little of what is left, so that the connection can be
// reused, and closes the body. A body far over the cap is not worth draining.
func closeBody(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 256<<10)
	_ = body.Close()
}

// checkHeader rejects a header net/http would refuse to send, so that a bad
// WithHeader is a terminal validation error rather than a retryable transport one.
func checkHeader(key, value string) error {
	if key == "" {
		return &ValidationError{Field: "header", Reason: "name must not be empty"}
	}
	for i := 0; i < len(key); i++ {
		if !isTokenChar(key[i]) {
			return &ValidationError{Field: "header " + quoteShort(key), Reason: "has an invalid name"}
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return &ValidationError{Field: "header " + key, Reason: "value contains a control character"}
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
