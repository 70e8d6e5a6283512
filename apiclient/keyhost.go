package apiclient

import (
	"net/url"
	"strings"
)

// MiMo's two kinds of API key and the hosts that take them: pay-as-you-go
// "sk-" keys are for api.xiaomimimo.com, Token Plan "tp-" keys for the
// token-plan-{cn,sgp,ams}.xiaomimimo.com clusters. A key sent to the other
// kind of host is answered 401, like a wrong key.
const (
	payAsYouGoHost   = "api.xiaomimimo.com"
	tokenPlanPrefix  = "token-plan-"
	mimoDomainSuffix = ".xiaomimimo.com"
	payAsYouGoURL    = "https://api.xiaomimimo.com/v1"
	tokenPlanURLs    = "https://token-plan-{cn,sgp,ams}.xiaomimimo.com/v1"
)

// KeyHostHint says what is wrong when the kind of key does not match the
// kind of MiMo host baseURL points at: an "sk-" key sent to a Token Plan host,
// or a "tp-" key sent to api.xiaomimimo.com. It returns "" when they match,
// and when the host is not MiMo's (a proxy, the mock) or the key has neither
// prefix: then nothing can be told. The hint names the key's prefix and the
// host, never the key. The worker's 401 errors carry it ([APIError.Hint]);
// a command can print it at start.
func KeyHostHint(baseURL, key string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	tokenPlanHost := strings.HasPrefix(host, tokenPlanPrefix) && strings.HasSuffix(host, mimoDomainSuffix)
	switch {
	case host == payAsYouGoHost && strings.HasPrefix(key, "tp-"):
		return "a tp- (Token Plan) key is sent to " + host + ", which takes sk- keys; Token Plan keys belong to " + tokenPlanURLs
	case tokenPlanHost && strings.HasPrefix(key, "sk-"):
		return "an sk- (pay-as-you-go) key is sent to " + host + ", which takes tp- keys; sk- keys belong to " + payAsYouGoURL
	}
	return ""
}

// KeyHostMismatch reports whether the key's kind does not match the MiMo
// host of baseURL; [KeyHostHint] says how.
func KeyHostMismatch(baseURL, key string) bool { return KeyHostHint(baseURL, key) != "" }
