// Package web is the merchant dashboard, embedded in the gateway binary and
// served at "/". It is plain HTML, CSS and JavaScript with no build step:
// the files under static/ are what the browser gets.
//
// The page opens the merchant socket at /ws beside it and calls the order API
// at /api (same origin, behind nginx) unless told otherwise with ?api= or its
// settings; deploy/README.md describes both. Handler is safe for concurrent
// use.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// csp allows the page's own files, and fetch/WebSocket to any origin because
// the order API may be configured on another one (?api=).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the dashboard's static files with an ETag per file, so
// browsers revalidate cheaply and a new gateway version is picked up at once.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	etags, err := hashFiles(sub)
	if err != nil {
		panic(err) // embedded files are always readable
	}
	fileServer := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		// The page may carry a token in ?token=: never leak it in a Referer.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		if tag, ok := etags[name]; ok {
			h.Set("ETag", tag) // http.FileServer answers If-None-Match with 304
		}
		fileServer.ServeHTTP(w, r)
	})
}

// hashFiles returns a strong ETag for every file of fsys.
func hashFiles(fsys fs.FS) (map[string]string, error) {
	tags := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	return tags, err
}
