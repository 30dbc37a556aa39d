package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"orderpush/pkg/stream/publish"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// fakeAPI is a small order API for tests whose point is the gateway's
// behaviour toward it (PROTOCOL.md shapes of summary, events and process):
// an in-memory event log per merchant, committed before it is published,
// and publishing that resumes with everything unpublished, in order, as
// orderapi's outbox does.
type fakeAPI struct {
	t        testing.TB
	srv      *httptest.Server
	store    *publish.Publisher
	verifier *token.Verifier

	mu        sync.Mutex
	log       map[string][][]byte // merchant -> frames, index seq-1
	sums      map[string][]int64  // merchant -> orderSum of each frame
	sum       map[string]int64
	published map[string]uint64 // merchant -> seqs published in order so far
	calls     map[string]int    // path pattern -> count
	processed []string          // "orderNo bearer"
	processFn func(orderNo string) (int, string)
}

func newFakeAPI(t testing.TB, rdb redis.UniversalClient) *fakeAPI {
	v, err := token.NewVerifier(token.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAPI{t: t, store: publish.New(rdb, publish.Options{}), verifier: v,
		log: map[string][][]byte{}, sums: map[string][]int64{}, sum: map[string]int64{}, published: map[string]uint64{}, calls: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /merchants/{id}/summary", f.summary)
	mux.HandleFunc("GET /merchants/{id}/events", f.events)
	mux.HandleFunc("POST /orders/{no}/process", f.process)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) URL() string { return f.srv.URL }

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.NewErrorBody(code, msg))
}

func (f *fakeAPI) auth(w http.ResponseWriter, r *http.Request, service bool) (token.Claims, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := f.verifier.Verify(raw)
	if !ok || err != nil {
		writeErr(w, 401, "unauthorized", "bad token")
		return c, false
	}
	if service && c.Role != token.RoleService {
		writeErr(w, 403, "forbidden", "service only")
		return c, false
	}
	return c, true
}

func (f *fakeAPI) count(k string) {
	f.mu.Lock()
	f.calls[k]++
	f.mu.Unlock()
}

func (f *fakeAPI) callCount(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[k]
}

func (f *fakeAPI) summary(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.auth(w, r, true); !ok {
		return
	}
	f.count("summary")
	id := r.PathValue("id")
	f.mu.Lock()
	body := map[string]any{"merchantId": id, "orderSum": f.sum[id], "seq": len(f.log[id]), "online": 0}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func (f *fakeAPI) events(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.auth(w, r, true); !ok {
		return
	}
	f.count("events")
	after, err1 := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	limit, err2 := strconv.Atoi(r.URL.Query().Get("limit"))
	if err1 != nil || err2 != nil || limit < 1 || limit > 1000 {
		writeErr(w, 400, "invalid_field", "after or limit")
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	frames := f.log[id]
	var out []json.RawMessage
	for i := after; i < uint64(len(frames)) && len(out) < limit; i++ {
		out = append(out, frames[i])
	}
	f.mu.Unlock()
	if out == nil {
		out = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"events": out})
}

func (f *fakeAPI) process(w http.ResponseWriter, r *http.Request) {
	c, ok := f.auth(w, r, false)
	if !ok {
		return
	}
	no := r.PathValue("no")
	f.mu.Lock()
	f.processed = append(f.processed, no+" "+c.Subject)
	fn := f.processFn
	f.mu.Unlock()
	status, code := 200, ""
	if fn != nil {
		status, code = fn(no)
	}
	if status != 200 {
		writeErr(w, status, code, "refused by the fake")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"orderNo":"` + no + `"}`))
}

// commit stores the next event of mid in the log (the database commit) and
// returns it; nothing is published.
func (f *fakeAPI) commit(mid string) (uint64, int64, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(f.log[mid]) + 1)
	f.sum[mid]++
	fr := orderFrame(mid, seq, f.sum[mid])
	f.log[mid] = append(f.log[mid], fr)
	f.sums[mid] = append(f.sums[mid], f.sum[mid])
	return seq, f.sum[mid], fr
}

// place commits and then publishes what is unpublished, in order; with
// Redis down the order still counts (the publish gives up quickly) and the
// relay publishes it later.
func (f *fakeAPI) place(mid string) uint64 {
	seq, _, _ := f.commit(mid)
	f.flush(context.Background(), mid, 100*time.Millisecond)
	return seq
}

// flush publishes mid's unpublished events in seq order, stopping at the
// first failure.
func (f *fakeAPI) flush(ctx context.Context, mid string, timeout time.Duration) {
	for {
		f.mu.Lock()
		next := f.published[mid] + 1
		if next > uint64(len(f.log[mid])) {
			f.mu.Unlock()
			return
		}
		fr, sum := f.log[mid][next-1], f.sums[mid][next-1]
		f.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := f.store.Publish(pctx, mid, next, sum, fr)
		cancel()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.published[mid] == next-1 {
			f.published[mid] = next
		}
		f.mu.Unlock()
	}
}
