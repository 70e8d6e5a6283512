package webui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mimoq/mimoq/internal/auth"
)

// Sessions are stateless, so that any replica of `mimoq serve` accepts a
// cookie another one set: the cookie holds an expiry and a nonce, signed
// with HMAC-SHA256 under a key derived from the API token the browser signed
// in with. Checking tries the key of every configured token; removing a
// token from MIMOQ_API_TOKENS ends the sessions it opened.
//
//	cookie value: base64url("v1|<expiry unix>|<nonce>") "." base64url(mac)
//
// The CSRF token of a session is an HMAC of the same payload under the same
// key with another label, so it needs no storage either.
const (
	cookieName    = "mimoq_session"
	sessionLabel  = "mimoq ui session v1"
	csrfLabel     = "mimoq ui csrf v1"
	sessionPrefix = "v1|"
)

// session is a verified session.
type session struct {
	payload string // the signed part of the cookie
	key     []byte // the key that verified it
	expires time.Time
}

// csrf is the session's CSRF token.
func (s *session) csrf() string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(csrfLabel + "|" + s.payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether tok is the session's CSRF token.
func (s *session) checkCSRF(tok string) bool {
	return tok != "" && hmac.Equal([]byte(tok), []byte(s.csrf()))
}

// newSession signs a session for a browser that presented token tok.
func newSession(tok string, now time.Time, ttl time.Duration) (*session, string) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	exp := now.Add(ttl).Truncate(time.Second)
	payload := sessionPrefix + strconv.FormatInt(exp.Unix(), 10) + "|" + base64.RawURLEncoding.EncodeToString(nonce)
	key := auth.Key(tok, sessionLabel)
	return &session{payload: payload, key: key, expires: exp}, encodeCookie(payload, key)
}

func encodeCookie(payload string, key []byte) string {
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(mac(key, payload))
}

func mac(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verifySession checks a cookie value against the keys of every token. It
// computes every MAC whichever matches, so that timing tells nothing.
func verifySession(value string, keys [][]byte, now time.Time) (*session, bool) {
	p64, m64, ok := strings.Cut(value, ".")
	if !ok || len(value) > 512 {
		return nil, false
	}
	pb, err1 := base64.RawURLEncoding.DecodeString(p64)
	got, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	payload := string(pb)
	rest, ok := strings.CutPrefix(payload, sessionPrefix)
	if !ok {
		return nil, false
	}
	expStr, _, ok := strings.Cut(rest, "|")
	if !ok {
		return nil, false
	}
	expUnix, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil {
		return nil, false
	}
	var match []byte
	for _, k := range keys {
		if hmac.Equal(got, mac(k, payload)) {
			match = k
		}
	}
	exp := time.Unix(expUnix, 0)
	if match == nil || !now.Before(exp) {
		return nil, false
	}
	return &session{payload: payload, key: match, expires: exp}, true
}

// secure reports whether the request came over HTTPS (directly or through
// a proxy that says so), to mark the cookie Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func sessionCookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/", Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	}
}

func clearCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)}
}

// sameOrigin reports whether a state-changing request comes from this
// site: browsers send Sec-Fetch-Site and Origin with POSTs; a request with
// neither comes from a non-browser client, which carries no ambient cookie
// of a victim.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	host := r.Host
	return o == "http://"+host || o == "https://"+host
}
