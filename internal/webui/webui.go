// Package webui is the operator's web page of `mimoq serve`, under /ui:
// an overview that opens on charts of the last hour, 6 hours or day (drawn
// as inline SVG on the server, each with its numbers as a table), batches
// with their progress, dead letters with the filters of `mimoq dlq
// list`, one dead letter in full, requeue and delete, lanes with pause and
// resume; and asynq's own monitor (asynqmon) under /monitoring.
//
// Pages are rendered on the server (html/template) and work without
// JavaScript. A browser signs in with one of the API tokens through a login
// form and gets a stateless signed session cookie (HttpOnly, SameSite=Strict);
// every POST carries a CSRF token derived from the session. A request with
// "Authorization: Bearer <token>" is let in too. Nothing but the login form
// is shown to a request that is neither.
package webui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/mimoq/mimoq/apiclient"
	"github.com/mimoq/mimoq/enqueue"
	"github.com/mimoq/mimoq/internal/auth"
	"github.com/mimoq/mimoq/internal/dlq"
	"github.com/mimoq/mimoq/internal/lane"
	"github.com/mimoq/mimoq/internal/ops"
)

// Config configures the web page.
type Config struct {
	// Tokens are the API tokens a browser may sign in with. Required.
	Tokens auth.Tokens
	// Client reads batches and jobs. Required.
	Client *enqueue.Client
	// Ops requeues and deletes dead letters and reads stats. Default
	// ops.New(Redis) with Lanes.
	Ops *ops.Ops
	// DLQ is the dead-letter store. Default dlq.New(Redis).
	DLQ *dlq.Store
	// Lanes pauses and resumes lanes. Default lanes of the interactive and
	// batch queues with the default limits.
	Lanes *lane.Lanes
	// Models are the models whose lanes and numbers are shown. Default the
	// models of apiclient.DefaultModels.
	Models []string
	// Redis holds the queues. Required.
	Redis redis.UniversalClient
	// Logger logs operator actions (who did what is in the request log).
	Logger zerolog.Logger
	// MonitoringWritable lets /monitoring (asynqmon) change queues and
	// tasks. Default false: read-only.
	MonitoringWritable bool
	// SessionTTL is how long a browser session lasts. Default 12h.
	SessionTTL time.Duration
}

func (c Config) withDefaults() Config {
	if c.DLQ == nil && c.Redis != nil {
		c.DLQ = dlq.New(c.Redis)
	}
	if c.Lanes == nil && c.Redis != nil {
		c.Lanes = lane.NewLanes(c.Redis, asynq.NewInspectorFromRedisClient(c.Redis))
	}
	if c.Ops == nil && c.Redis != nil {
		c.Ops = ops.New(c.Redis, ops.WithLanes(c.Lanes))
	}
	if len(c.Models) == 0 {
		c.Models = apiclient.DefaultModels().Names()
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Tokens.Len() == 0:
		return errors.New("webui: Config.Tokens is empty: a browser could not sign in")
	case c.Client == nil:
		return errors.New("webui: Config.Client is required")
	case c.Redis == nil:
		return errors.New("webui: Config.Redis is required")
	}
	return nil
}

//go:embed templates/*.html
var templateFS embed.FS

// ui serves the pages.
type ui struct {
	cfg   Config
	keys  [][]byte // session keys, one per token
	pages map[string]*template.Template
	mux   *http.ServeMux
	now   func() time.Time
}

// New returns the handler of everything under /ui and /monitoring; mount it
// at both prefixes, unstripped.
func New(cfg Config) (http.Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u := &ui{cfg: cfg, keys: cfg.Tokens.Keys(sessionLabel), now: time.Now}
	if err := u.parse(); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

func (u *ui) parse() error {
	u.pages = map[string]*template.Template{}
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := n.Name()
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", "templates/"+name)
		if err != nil {
			return fmt.Errorf("webui: parse %s: %w", name, err)
		}
		u.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return nil
}

func (u *ui) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/login", u.loginForm)
	m.HandleFunc("POST /ui/login", u.login)
	m.Handle("POST /ui/logout", u.auth(u.logout))
	m.Handle("GET /ui", u.auth(u.overview))
	m.Handle("GET /ui/{$}", u.auth(u.overview))
	m.Handle("GET /ui/batches", u.auth(u.batches))
	m.Handle("GET /ui/batches/{id}", u.auth(u.batch))
	m.Handle("GET /ui/dlq", u.auth(u.dlqList))
	m.Handle("GET /ui/dlq/{id}", u.auth(u.dlqShow))
	m.Handle("POST /ui/dlq/requeue", u.auth(u.dlqAction))
	m.Handle("POST /ui/dlq/delete", u.auth(u.dlqAction))
	m.Handle("GET /ui/lanes", u.auth(u.lanes))
	m.Handle("GET /ui/webhooks", u.auth(u.webhookList))
	m.Handle("GET /ui/webhooks/{id}", u.auth(u.webhookShow))
	m.Handle("POST /ui/webhooks/{id}/resend", u.auth(u.webhookResend))
	m.Handle("POST /ui/lanes/{model}/{action}", u.auth(u.laneAction))
	m.Handle("/ui/", u.auth(func(w http.ResponseWriter, r *http.Request, _ *request) {
		u.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	}))
	mon := u.monitoring()
	m.Handle("/monitoring", u.authMonitoring(mon))
	m.Handle("/monitoring/", u.authMonitoring(mon))
	u.mux = m
}

func (u *ui) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	if strings.HasPrefix(r.URL.Path, "/ui") {
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "+
			"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Cache-Control", "no-store")
	}
	u.mux.ServeHTTP(w, r)
}

// request is what a handler knows about who asks.
type request struct {
	sess   *session // nil for a bearer-token request
	bearer bool
}

// CSRF is the token forms carry ("" for bearer requests, which need none).
func (q *request) CSRF() string {
	if q.sess == nil {
		return ""
	}
	return q.sess.csrf()
}

type handler func(http.ResponseWriter, *http.Request, *request)

// authenticate finds a valid session cookie or bearer token.
func (u *ui) authenticate(r *http.Request) (*request, bool) {
	if tok := auth.Bearer(r); tok != "" {
		return &request{bearer: true}, u.cfg.Tokens.Valid(tok)
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	s, ok := verifySession(c.Value, u.keys, u.now())
	if !ok {
		return nil, false
	}
	return &request{sess: s}, true
}

// auth lets signed-in requests through to h; others go to the login form.
// A POST must come from this site and, with a session, carry its CSRF token.
func (u *ui) auth(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := u.authenticate(r)
		if !ok {
			if auth.Bearer(r) != "" {
				http.Error(w, "invalid bearer token", http.StatusUnauthorized)
				return
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "sign in first", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && q.sess != nil {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if !sameOrigin(r) || !q.sess.checkCSRF(r.PostFormValue("csrf")) {
				u.fail(w, r, q, http.StatusForbidden, "The form was stale or came from another site; nothing was changed. Reload the page and try again.")
				return
			}
		}
		h(w, r, q)
	})
}

// safeNext keeps a post-login redirect on this site's pages.
func safeNext(next string) string {
	if (strings.HasPrefix(next, "/ui") || strings.HasPrefix(next, "/monitoring")) &&
		!strings.HasPrefix(next, "//") && !strings.Contains(next, "\\") && !strings.HasPrefix(next, "/ui/login") {
		return next
	}
	return "/ui"
}

func (u *ui) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := u.authenticate(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	u.render(w, r, http.StatusOK, "login", nil, map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-in refused", http.StatusForbidden)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	if !u.cfg.Tokens.Valid(tok) {
		u.cfg.Logger.Warn().Str("remote", r.RemoteAddr).Msg("web ui sign-in refused")
		u.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{
			"Next": next, "Error": "That token is not one of MIMOQ_API_TOKENS.",
		})
		return
	}
	s, value := newSession(tok, u.now(), u.cfg.SessionTTL)
	http.SetCookie(w, sessionCookie(r, value, s.expires))
	u.cfg.Logger.Info().Str("remote", r.RemoteAddr).Msg("web ui sign-in")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request, _ *request) {
	http.SetCookie(w, clearCookie(r))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Req     *request
	Flash   string
	Error   string
	Data    any
	Now     time.Time
	Models  []string
	Version string
}

func (u *ui) render(w http.ResponseWriter, r *http.Request, status int, name string, q *request, data any) {
	t, ok := u.pages[name]
	if !ok {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	p := page{Title: titles[name], Nav: name, Req: q, Data: data, Now: u.now(), Models: u.cfg.Models,
		Flash: u.flashText(r.URL.Query())}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		u.cfg.Logger.Error().Err(err).Str("page", name).Msg("render web ui page")
		http.Error(w, "could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page (inside the layout when signed in).
func (u *ui) fail(w http.ResponseWriter, r *http.Request, q *request, status int, msg string) {
	u.render(w, r, status, "error", q, map[string]any{"Status": status, "Message": msg})
}

var titles = map[string]string{
	"login": "Sign in", "overview": "Overview", "batches": "Batches", "batch": "Batch",
	"dlq": "Dead letters", "dead": "Dead letter", "lanes": "Lanes", "webhooks": "Webhooks", "webhook": "Webhook delivery", "error": "Error", "confirm": "Confirm",
}

// flashText renders the outcome of the last action from fixed messages
// (never from text in the URL).
func (u *ui) flashText(q url.Values) string {
	n := q.Get("n")
	if _, err := strconv.Atoi(n); err != nil {
		n = "some"
	}
	if m := q.Get("model"); m != "" && !u.knownModel(m) {
		return ""
	}
	switch q.Get("done") {
	case "requeued":
		return "Requeued " + n + " dead letter(s); they are queued again with a fresh attempt budget."
	case "deleted":
		return "Deleted " + n + " dead letter(s)."
	case "notdead":
		return n + " of the selected jobs were no longer dead letters (requeued or deleted meanwhile); nothing was done to them."
	case "none":
		return "Nothing was selected."
	case "paused":
		return "Lane " + q.Get("model") + " paused: its jobs stay queued until it is resumed."
	case "resumed":
		return "Lane " + q.Get("model") + " resumed."
	case "resent":
		return "The delivery will be sent again."
	}
	return ""
}

func (u *ui) knownModel(m string) bool { return slices.Contains(u.cfg.Models, m) }
