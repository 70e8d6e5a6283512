package auth

import (
	"net/http/httptest"
	"testing"
)

func TestTokensValid(t *testing.T) {
	t.Parallel()
	toks := NewTokens("alpha", " beta ", "")
	tests := []struct {
		tok  string
		want bool
	}{
		{"alpha", true},
		{"beta", true},
		{"", false},
		{"alph", false},
		{"alphaa", false},
		{"ALPHA", false},
	}
	for _, tt := range tests {
		if got := toks.Valid(tt.tok); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.tok, got, tt.want)
		}
	}
	if toks.Len() != 2 {
		t.Errorf("Len = %d, want 2", toks.Len())
	}
	if (Tokens{}).Valid("alpha") {
		t.Error("the zero Tokens accepted a token")
	}
}

func TestBearer(t *testing.T) {
	t.Parallel()
	tests := []struct{ header, want string }{
		{"Bearer abc", "abc"},
		{"bearer  abc ", "abc"},
		{"Basic abc", ""},
		{"Bearer", ""},
		{"", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		if got := Bearer(r); got != tt.want {
			t.Errorf("Bearer(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestKeysMatchKey(t *testing.T) {
	t.Parallel()
	toks := NewTokens("alpha", "beta")
	keys := toks.Keys("session")
	if len(keys) != 2 || string(keys[1]) != string(Key(" beta ", "session")) {
		t.Fatalf("Keys does not hold Key of each token")
	}
	if string(Key("alpha", "session")) == string(Key("alpha", "csrf")) || string(keys[0]) == string(keys[1]) {
		t.Error("keys of different labels or tokens are equal")
	}
}
