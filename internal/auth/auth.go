// Package auth checks the bearer tokens of `mimoq serve` (MIMOQ_API_TOKENS):
// in constant time, without ever logging or echoing a token.
package auth

import (
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

// Bearer returns the token of an "Authorization: Bearer <token>" header, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}
