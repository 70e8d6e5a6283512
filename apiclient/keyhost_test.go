package apiclient

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestKeyHostHint(t *testing.T) {
	t.Parallel()
	const (
		payg = "https://api.xiaomimimo.com/v1"
		sgp  = "https://token-plan-sgp.xiaomimimo.com/v1"
	)
	cases := []struct {
		name, baseURL, key string
		want               string // a part of the hint; "" for none
	}{
		{"sk on pay-as-you-go", payg, "sk-abc", ""},
		{"tp on token plan", sgp, "tp-abc", ""},
		{"tp on pay-as-you-go", payg, "tp-abc", "a tp- (Token Plan) key is sent to api.xiaomimimo.com, which takes sk- keys; Token Plan keys belong to https://token-plan-{cn,sgp,ams}.xiaomimimo.com/v1"},
		{"sk on token plan", sgp, "sk-abc", "an sk- (pay-as-you-go) key is sent to token-plan-sgp.xiaomimimo.com, which takes tp- keys; sk- keys belong to https://api.xiaomimimo.com/v1"},
		{"sk on cn cluster", "https://token-plan-cn.xiaomimimo.com/v1", "sk-x", "token-plan-cn.xiaomimimo.com"},
		{"sk on ams with port and case", "https://Token-Plan-AMS.XiaomiMiMo.com:443/v1", "sk-x", "token-plan-ams.xiaomimimo.com"},
		{"credentials in the URL stay out", "https://user:pw@api.xiaomimimo.com/v1", "tp-x", "sent to api.xiaomimimo.com,"},
		{"another host", "https://proxy.example.com/v1", "tp-abc", ""},
		{"the mock", "http://127.0.0.1:8090/v1", "sk-abc", ""},
		{"look-alike host", "https://token-plan-sgp.xiaomimimo.com.evil.example/v1", "sk-abc", ""},
		{"a key of neither kind", payg, "abc", ""},
		{"bad URL", "://", "tp-abc", ""},
	}
	for _, tc := range cases {
		got := KeyHostHint(tc.baseURL, tc.key)
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: KeyHostHint = %q, want none", tc.name, got)
		case !strings.Contains(got, tc.want):
			t.Errorf("%s: KeyHostHint = %q, want it to contain %q", tc.name, got, tc.want)
		case strings.Contains(got, "pw") || (len(tc.key) > 3 && strings.Contains(got, tc.key)):
			t.Errorf("%s: KeyHostHint leaks a secret: %q", tc.name, got)
		}
		if KeyHostMismatch(tc.baseURL, tc.key) != (tc.want != "") {
			t.Errorf("%s: KeyHostMismatch disagrees with KeyHostHint", tc.name)
		}
	}
}

// roundTripFunc fakes the transport, so that a client can be pointed at
// MiMo's real host names without reaching them.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func fakeResponse(r *http.Request, status int, contentType, body string) *http.Response {
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Request: r,
		Header: http.Header{"Content-Type": {contentType}, "X-Request-Id": {"req-fake"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}
}

func TestDo401HintsAtKeyHostMismatch(t *testing.T) {
	t.Parallel()
	const key = "sk-" + "wrong-host-SECRET-42"
	body := `{"error":{"code":"401","message":"Invalid API Key","type":"authentication_error"}}`
	for _, tc := range []struct {
		baseURL, hint string
	}{
		{"https://token-plan-ams.xiaomimimo.com/v1", "an sk- (pay-as-you-go) key is sent to token-plan-ams.xiaomimimo.com"},
		{"https://api.xiaomimimo.com/v1", ""},
	} {
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return fakeResponse(r, 401, "application/json", body), nil
		})}
		c, err := New(Options{BaseURL: tc.baseURL, APIKey: key, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Do(t.Context(), testRequest())
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s: Do = %v, want an *APIError", tc.baseURL, err)
		}
		if !strings.HasPrefix(ae.Hint, tc.hint) || (tc.hint == "") != (ae.Hint == "") {
			t.Errorf("%s: Hint = %q, want %q…", tc.baseURL, ae.Hint, tc.hint)
		}
		if tc.hint != "" && !strings.Contains(err.Error(), "; hint: "+tc.hint) {
			t.Errorf("%s: Error() = %q lacks the hint", tc.baseURL, err)
		}
		if strings.Contains(err.Error(), key) || strings.Contains(ae.Hint, key) {
			t.Errorf("%s: the key leaks: %q", tc.baseURL, err)
		}
		if cl := Classify(err); cl.Reason != ReasonAuthentication || !cl.PauseLane {
			t.Errorf("%s: Classify = %+v", tc.baseURL, cl)
		}
	}
}
