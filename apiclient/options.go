package apiclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"
)

// DefaultBaseURL is MiMo's own API endpoint, the default for [Options.BaseURL].
const DefaultBaseURL = "https://api.xiaomimimo.com/v1"

// Defaults of [Options], exported so that callers (flags, environment) can show them.
const (
	DefaultDialTimeout         = 10 * time.Second
	DefaultTLSHandshakeTimeout = 10 * time.Second
	DefaultRequestTimeout      = 5 * time.Minute
	// DefaultMaxResponseBytes is large enough for base64 audio from the speech models (mimo-v2.5-tts).
	DefaultMaxResponseBytes int64 = 64 << 20
	// DefaultMaxIdleConnsPerHost keeps a connection per in-flight call alive at the
	// concurrency a worker runs (one host, many parallel calls).
	DefaultMaxIdleConnsPerHost = 256
)

// modulePath is this module's path, used to find its version for the User-Agent.
const modulePath = "github.com/mimoq/mimoq"

// AuthStyle says which header carries the API key.
type AuthStyle string

const (
	// AuthBearer sends "Authorization: Bearer <key>", the default.
	AuthBearer AuthStyle = "bearer"
	// AuthAPIKey sends "api-key: <key>", which MiMo also accepts.
	AuthAPIKey AuthStyle = "api-key"
)

// Options configures a [Client]. The zero value of every field but APIKey means
// "the default".
type Options struct {
	// BaseURL is the API root; the client posts to BaseURL + "/chat/completions".
	// A trailing slash is tolerated. Default: [DefaultBaseURL].
	BaseURL string

	// APIKey authenticates every call. Required. It is never put in an error string:
	// even an error body that echoes it is redacted.
	APIKey string

	// AuthStyle chooses the header that carries APIKey. Default: [AuthBearer].
	AuthStyle AuthStyle

	// Models lists the models a request may name, with their output-token limits;
	// requests are checked against it before sending. Default: [DefaultModels].
	Models Models

	// DialTimeout bounds connecting to the API (DNS and TCP). Default: 10s.
	// Ignored when HTTPClient is set.
	DialTimeout time.Duration

	// TLSHandshakeTimeout bounds the TLS handshake. Default: 10s.
	// Ignored when HTTPClient is set.
	TLSHandshakeTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for response headers once the request is
	// written — for an LLM, the whole generation. Default: RequestTimeout.
	// Ignored when HTTPClient is set.
	ResponseHeaderTimeout time.Duration

	// RequestTimeout bounds one attempt from connecting to the last byte of the
	// response body. When it fires, Do returns a retryable timeout, distinct from the
	// caller's own context ending. Default: 5m.
	RequestTimeout time.Duration

	// MaxResponseBytes caps the response body read. A 2xx body over the cap is a
	// terminal [*ResponseTooLargeError]. Default: 64 MiB.
	MaxResponseBytes int64

	// HTTPClient, when set, sends every request instead of the client's own
	// transport (keep-alive, the timeouts above, redirects not followed). Its
	// own Timeout, if any, is treated like RequestTimeout. Default: nil.
	HTTPClient *http.Client

	// UserAgent is sent with every request. Default: "mimoq/<module version>"
	// ("mimoq/dev" in a development build).
	UserAgent string
}

func (o Options) withDefaults() Options {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.AuthStyle == "" {
		o.AuthStyle = AuthBearer
	}
	if o.Models == nil {
		o.Models = DefaultModels()
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.TLSHandshakeTimeout == 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.ResponseHeaderTimeout == 0 {
		o.ResponseHeaderTimeout = o.RequestTimeout
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.UserAgent == "" {
		o.UserAgent = "mimoq/" + moduleVersion()
	}
	return o
}

func (o Options) validate() error {
	u, err := url.Parse(o.BaseURL)
	if err != nil {
		// url.Parse quotes the whole URL, which may carry credentials: say less.
		return errors.New("base url is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("base url %q must start with http:// or https://", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("base url %q has no host", u.Redacted())
	}
	if o.APIKey == "" {
		return errors.New("api key is required")
	}
	for _, c := range []byte(o.APIKey) {
		// A key with a newline would break the header; one with a space is almost
		// always a copy-paste accident. Never echo the key itself.
		if c <= ' ' || c >= 0x7f {
			return errors.New("api key must be printable ASCII without spaces")
		}
	}
	switch o.AuthStyle {
	case AuthBearer, AuthAPIKey:
	default:
		return fmt.Errorf("auth style %q is not one of %s, %s", o.AuthStyle, AuthBearer, AuthAPIKey)
	}
	if len(o.Models) == 0 {
		return errors.New("models must not be empty")
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"request timeout", o.RequestTimeout},
		{"dial timeout", o.DialTimeout},
		{"tls handshake timeout", o.TLSHandshakeTimeout},
		{"response header timeout", o.ResponseHeaderTimeout},
	}
	for _, d := range durations {
		if d.d < 0 {
			return fmt.Errorf("%s %s must not be negative", d.name, d.d)
		}
	}
	if o.MaxResponseBytes < 0 {
		return fmt.Errorf("max response bytes %d must not be negative", o.MaxResponseBytes)
	}
	return nil
}

// moduleVersion is this module's version as recorded in the binary, or "dev".
func moduleVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	v := ""
	if info.Main.Path == modulePath {
		v = info.Main.Version
	} else {
		for _, d := range info.Deps {
			if d.Path == modulePath {
				v = d.Version
				break
			}
		}
	}
	if v == "" || v == "(devel)" {
		return "dev"
	}
	return v
}
