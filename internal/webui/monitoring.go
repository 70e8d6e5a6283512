package webui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// monitoringRoot is where asynqmon is mounted.
const monitoringRoot = "/monitoring"

// sharedConn hands asynqmon the Redis client the server already has, in
// place of a connection option it would dial itself. asynqmon v0.7 builds
// on go-redis v9 and asynq's Inspector API, which v0.26 keeps.
type sharedConn struct{ rdb redis.UniversalClient }

func (c sharedConn) MakeRedisClient() any { return c.rdb }

// monitoring returns asynqmon: read-only (its API refuses anything but
// GET, and so does authMonitoring) unless MonitoringWritable.
func (u *ui) monitoring() http.Handler {
	// The handler is never closed: closing it would close the shared client.
	return asynqmon.New(asynqmon.Options{
		RootPath:     monitoringRoot,
		RedisConnOpt: sharedConn{u.cfg.Redis},
		ReadOnly:     !u.cfg.MonitoringWritable,
	})
}

// authMonitoring puts asynqmon behind the same sign-in as the pages. Its
// single-page app calls its JSON API with the session cookie (same origin);
// it sends no CSRF token, so a change must come from this site
// (SameSite=Strict keeps the cookie off cross-site requests as well).
func (u *ui) authMonitoring(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := u.authenticate(r); !ok {
			if strings.HasPrefix(r.URL.Path, monitoringRoot+"/api/") || r.Method != http.MethodGet {
				http.Error(w, `{"error":"sign in at /ui/login first"}`, http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !u.cfg.MonitoringWritable {
				http.Error(w, "monitoring is read-only", http.StatusForbidden)
				return
			}
			if !sameOrigin(r) {
				http.Error(w, "cross-site request refused", http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
