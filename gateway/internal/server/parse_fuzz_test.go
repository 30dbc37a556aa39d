package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzBearer: the token of a socket request (?token= first, else
// Authorization: Bearer) never panics and never comes from anywhere else.
func FuzzBearer(f *testing.F) {
	f.Add("", "Bearer a.b.c")
	f.Add("a.b.c", "")
	f.Add("", "bearer  x ")
	f.Add("", "Basic dXNlcjpwdw==")
	f.Add("", "Bearer")
	f.Add("%zz", "Bearer\t")
	f.Fuzz(func(t *testing.T, query, auth string) {
		r := &http.Request{URL: &url.URL{RawQuery: "token=" + query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		got := bearer(r)
		q := r.URL.Query().Get("token")
		switch {
		case q != "":
			if got != q {
				t.Fatalf("query token %q, got %q", q, got)
			}
		case got == "":
		case len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") || got != strings.TrimSpace(auth[7:]):
			t.Fatalf("Authorization %q gave %q", auth, got)
		}
	})
}

// FuzzParseOrigins: ALLOWED_ORIGINS never panics; what it accepts is
// lower-case, trimmed, without a trailing slash, a host or scheme://host
// pattern that path.Match can use, and originAllowed copes with it.
func FuzzParseOrigins(f *testing.F) {
	for _, s := range []string{"", "https://*.shop.example", "dash.example:8443, HTTP://A.B/", "[", "a/b", ",,,", "https://x/y"} {
		f.Add(s, "https://a.shop.example")
	}
	f.Fuzz(func(t *testing.T, s, origin string) {
		ps, err := parseOrigins(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p == "" || p != strings.ToLower(p) || p != strings.TrimSpace(p) || strings.HasSuffix(p, "/") && p != "/" {
				t.Fatalf("%q: pattern %q not normalised", s, p)
			}
			if strings.Contains(p, "/") && !strings.Contains(p, "://") {
				t.Fatalf("%q: pattern %q with a path", s, p)
			}
		}
		_ = originAllowed(ps, origin)
	})
}
