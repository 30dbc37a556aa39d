// Package web is the merchant dashboard and the JavaScript client, embedded
// in the gateway binary and served at "/" and "/client.js". Both are plain
// HTML, CSS and JavaScript with no build step: the files under static/ are
// what the browser gets, except that index.html carries the order API's
// base URL in a <meta> element filled in here.
//
// The order API's address comes from the gateway's configuration
// (DASHBOARD_API_URL, default "/api" on the page's own origin), never from
// the page's link or storage: a crafted link must not be able to send the
// merchant's token elsewhere. The Content-Security-Policy's connect-src
// names only the page's own origin (and its ws/wss form) and that API
// origin, so even a script bug cannot reach another host.
//
// A Handler is immutable after New and safe for concurrent use.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// DefaultAPIURL is the order API's base when DASHBOARD_API_URL is unset: the
// page's own origin, under /api (nginx routes it to the order API).
const DefaultAPIURL = "/api"

// ClientPath is where the JavaScript client is served.
const ClientPath = "/client.js"

// apiMetaPlaceholder is the element of index.html that New fills in.
const apiMetaPlaceholder = `<meta name="orderpush-api" content="">`

// versionRE finds the client's VERSION export (client.js, first lines).
var versionRE = regexp.MustCompile(`(?m)^export const VERSION = '([0-9]+\.[0-9]+\.[0-9]+)';$`)

// Options configure New.
type Options struct {
	// APIURL is the order API's base URL as the page calls it: "" or
	// DefaultAPIURL for the page's own origin, else what ParseAPIURL
	// accepted.
	APIURL string
}

// Handler serves the dashboard and the client.
type Handler struct {
	files     fs.FS
	fileSrv   http.Handler
	index     []byte            // index.html with the API URL filled in
	etags     map[string]string // file name -> strong ETag
	apiOrigin string            // "" for same origin, else scheme://host[:port]
	version   string            // client.js VERSION
	modTime   time.Time
}

// New builds the handler. It fails only on an Options.APIURL that
// ParseAPIURL refuses.
func New(opts Options) (*Handler, error) {
	api := opts.APIURL
	if api == "" {
		api = DefaultAPIURL
	}
	h := &Handler{etags: map[string]string{}}
	if api != DefaultAPIURL {
		u, err := ParseAPIURL(api)
		if err != nil {
			return nil, fmt.Errorf("DASHBOARD_API_URL: %w", err)
		}
		api = u.String()
		h.apiOrigin = u.Scheme + "://" + u.Host
	}
	sub, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err // the embed pattern above guarantees the directory
	}
	h.files = sub
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(index, []byte(apiMetaPlaceholder)) {
		return nil, errors.New("web: index.html lacks the orderpush-api meta element")
	}
	h.index = bytes.Replace(index, []byte(apiMetaPlaceholder),
		[]byte(`<meta name="orderpush-api" content="`+html.EscapeString(api)+`">`), 1)
	client, err := fs.ReadFile(sub, "client.js")
	if err != nil {
		return nil, err
	}
	m := versionRE.FindSubmatch(client)
	if m == nil {
		return nil, errors.New("web: client.js lacks its VERSION export")
	}
	h.version = string(m[1])
	if err := h.hashFiles(); err != nil {
		return nil, err
	}
	h.fileSrv = http.FileServerFS(sub)
	return h, nil
}

// ClientVersion is the VERSION the served client.js exports.
func (h *Handler) ClientVersion() string { return h.version }

// ParseAPIURL checks DASHBOARD_API_URL: an absolute http or https URL with
// a host, optionally a path prefix (the order API's base, such as
// https://api.shop.example or https://shop.example/api), and nothing else:
// no user info, query or fragment. The trailing slash is dropped.
func ParseAPIURL(s string) (*url.URL, error) {
	if s == "" || len(s) > 2000 {
		return nil, fmt.Errorf("want an absolute http(s) URL of 1-2000 characters")
	}
	if strings.ContainsAny(s, " \t\r\n\"'<>\\`") {
		return nil, fmt.Errorf("want an absolute http(s) URL like https://api.shop.example, got %q", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("want an absolute http(s) URL like https://api.shop.example: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("want an http or https URL, got scheme %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		return nil, fmt.Errorf("want an absolute URL with a host, got %q", s)
	case u.User != nil:
		return nil, errors.New("user info is not allowed")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("want no query or fragment, got %q", s)
	case !validHost(u.Host):
		return nil, fmt.Errorf("bad host %q", u.Host)
	}
	if p := u.Port(); p != "" {
		if len(p) > 5 || strings.Trim(p, "0123456789") != "" {
			return nil, fmt.Errorf("bad port %q", p)
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if u.Path != "" && (path.Clean(u.Path) != u.Path || strings.Trim(u.Path, pathChars) != "") {
		return nil, fmt.Errorf("want a clean path of letters, digits and . _ ~ - /, got %q", u.Path)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

// pathChars are what a DASHBOARD_API_URL path may hold.
const pathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-/"

// validHost reports whether h is host[:port] made of the characters a
// Content-Security-Policy source may hold, so neither a configured URL nor
// a request's Host header can add a directive to the policy.
func validHost(h string) bool {
	if h == "" || len(h) > 260 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// csp is the policy of every response: only the page's own files; fetch
// and WebSocket/SSE to its own origin and the configured order API. The
// ws/wss form of the own origin is listed as well as 'self' because not
// every browser lets 'self' cover WebSocket URLs.
func (h *Handler) csp(host string) string {
	connect := "'self'"
	if validHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	if h.apiOrigin != "" {
		connect += " " + h.apiOrigin
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
}

// ServeHTTP serves the static files with an ETag per file, so browsers
// revalidate cheaply and a new gateway version is picked up at once.
// /client.js?v=<its VERSION> is cached for a year (the version in the URL
// busts it); any other v, or none, revalidates.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	// The page may carry a token in ?token=: never leak it in a Referer.
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", h.csp(r.Host))
	hdr.Set("Cache-Control", "no-cache")
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if "/"+name == ClientPath {
		// Any site may import the client (it holds no secret); the module
		// loader needs CORS for a cross-origin import.
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Cross-Origin-Resource-Policy", "cross-origin")
		if r.URL.Query().Get("v") == h.version {
			hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
		}
	}
	if tag, ok := h.etags[name]; ok {
		hdr.Set("ETag", tag) // answered with 304 on If-None-Match below
	}
	if name == "index.html" {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "index.html", h.modTime, bytes.NewReader(h.index))
		return
	}
	h.fileSrv.ServeHTTP(w, r)
}

// hashFiles gives every file a strong ETag (index.html as served).
func (h *Handler) hashFiles() error {
	return fs.WalkDir(h.files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(h.files, p)
		if err != nil {
			return err
		}
		if p == "index.html" {
			b = h.index
		}
		sum := sha256.Sum256(b)
		h.etags[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
}
