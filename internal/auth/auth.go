// Package auth checks the bearer tokens of `mimoq serve` (MIMOQ_API_TOKENS):
// in constant time, without ever logging or echoing a token.
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Tokens is the set of accepted tokens. The zero value accepts nothing.
type Tokens struct {
	// sums holds the SHA-256 of each token: comparing fixed-size digests in
	// constant time hides both the tokens and their lengths.
	sums [][sha256.Size]byte
}

// NewTokens returns the set of the given non-empty tokens.
func NewTokens(tokens ...string) Tokens {
	var t Tokens
	for _, tok := range tokens {
		if tok = strings.TrimSpace(tok); tok != "" {
			t.sums = append(t.sums, sha256.Sum256([]byte(tok)))
		}
	}
	return t
}

// Len is the number of accepted tokens.
func (t Tokens) Len() int { return len(t.sums) }

// Valid reports whether tok is one of the tokens. It compares against every
// token, in constant time, whatever matches.
func (t Tokens) Valid(tok string) bool {
	if tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	ok := 0
	for i := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], t.sums[i][:])
	}
	return ok == 1
}

// Keys returns one signing key per accepted token, derived from the token
// and label, so that what one process signs with the key of a token (e.g. a
// browser session) every process with the same tokens can verify, while
// neither the tokens nor their digests are used as keys directly. Removing a
// token from the set invalidates what was signed with it.
func (t Tokens) Keys(label string) [][]byte {
	out := make([][]byte, len(t.sums))
	for i := range t.sums {
		out[i] = deriveKey(t.sums[i], label)
	}
	return out
}

// Key is the key Keys derives from tok and label.
func Key(tok, label string) []byte {
	return deriveKey(sha256.Sum256([]byte(strings.TrimSpace(tok))), label)
}

func deriveKey(sum [sha256.Size]byte, label string) []byte {
	m := hmac.New(sha256.New, sum[:])
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Bearer returns the token of an "Authorization: Bearer <token>" header, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}
