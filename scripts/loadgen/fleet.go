package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// Receipt is one stream frame as a socket got it.
type Receipt struct {
	Seq     uint64
	At      time.Duration // Env.Now() when the message was read
	OrderNo string        // only when the fleet records order numbers
}

// Sock is one merchant socket of a Fleet.
type Sock struct {
	Index    int
	Merchant int // index into the fleet's merchant ids
	Gateway  int // index into the fleet's URLs (Env.Gateways by default)

	// Set by the dial, before the reader starts.
	Node       string
	ConnID     string
	HelloSeq   uint64
	ConnectDur time.Duration // dial start to hello

	// Owned by the reader goroutine until done is closed.
	Track    SeqTrack
	Receipts []Receipt
	err      error

	seen    atomic.Int64  // fresh stream frames, readable while running
	other   atomic.Int64  // frames without seq (pong, notice, ...)
	last    atomic.Uint64 // highest fresh seq (written by the reader)
	acked   atomic.Uint64 // highest seq acked (written by the fleet's ack loop)
	seer    bool          // sends seen for its orders; set before the reader starts
	conn    frameConn
	closing atomic.Bool
	dropped atomic.Bool
	done    chan struct{}
}

// write sends a client frame; only the WebSocket client sends any.
func (s *Sock) write(p []byte) error {
	w, ok := s.conn.(interface{ WriteText(p []byte) error })
	if !ok {
		return errors.New("this transport's client sends no frames")
	}
	return w.WriteText(p)
}

// Err is why the socket's reader stopped, nil if the fleet closed it.
// Valid after Fleet.Close.
func (s *Sock) Err() error { return s.err }

// FleetOptions shape what the sockets do with frames.
type FleetOptions struct {
	Transport    string // TransportWS (the default), TransportSSE or TransportSocketIO
	Batch        bool   // ?batch=1, WebSocket only
	Record       bool   // keep a Receipt per fresh frame
	RecordOrders bool   // and the frame's orderNo
	// OnFrame, when set, is called by the reader goroutines for each fresh
	// stream frame; it must be fast and safe for concurrent use.
	OnFrame func(s *Sock, seq uint64)
	// Connect bounds the time for one socket's dial and hello.
	Connect time.Duration
	// Ack, when above zero, makes every socket ack the highest seq it got,
	// at most once per Ack, as the contract's client does (PROTOCOL.md
	// "Receipts and attention": at most every 250 ms).
	Ack time.Duration
	// Seen makes the first socket opened for each merchant send seen for
	// every order frame it gets, at once: a person looking at each order.
	Seen bool
	// URLs replaces Env.Gateways (the fan-out floor server).
	URLs []*url.URL
}

// Fleet is a set of merchant sockets with one reader goroutine each.
type Fleet struct {
	env       *Env
	opts      FleetOptions
	merchants []string
	tokens    []string

	next  atomic.Int64 // index of the next socket
	mu    sync.Mutex
	socks []*Sock
	wg    sync.WaitGroup

	seers     []atomic.Bool // per merchant: a socket sends its seen
	acks      atomic.Int64  // ack frames sent
	seenSent  atomic.Int64  // seen frames sent
	errFrames atomic.Int64  // error frames received (refusals, rate_limited)
	ackStop   chan struct{}
	ackDone   chan struct{}
	stopAcks  sync.Once
}

// NewFleet prepares sockets for the given merchants, minting one merchant
// token each before any timing starts.
func NewFleet(env *Env, merchants []string, opts FleetOptions) (*Fleet, error) {
	if opts.Connect <= 0 {
		opts.Connect = 15 * time.Second
	}
	if opts.URLs == nil {
		opts.URLs = env.Gateways
	}
	if opts.Transport == "" {
		opts.Transport = TransportWS
	}
	if (opts.Ack > 0 || opts.Seen) && opts.Transport != TransportWS {
		return nil, fmt.Errorf("receipts (acks, seen) need the %s transport, not %s", TransportWS, opts.Transport)
	}
	if err := checkTransport(opts.Transport); err != nil {
		return nil, err
	}
	if len(opts.URLs) == 0 {
		return nil, env.NeedGateways()
	}
	f := &Fleet{env: env, opts: opts, merchants: merchants, tokens: make([]string, len(merchants)),
		seers: make([]atomic.Bool, len(merchants)), ackStop: make(chan struct{}), ackDone: make(chan struct{})}
	for i, m := range merchants {
		t, err := token.Mint(env.Secret, token.RoleMerchant, m, 6*time.Hour)
		if err != nil {
			return nil, err
		}
		f.tokens[i] = t
	}
	if opts.Ack > 0 {
		go f.ackLoop()
	} else {
		close(f.ackDone)
	}
	return f, nil
}

// ackLoop is the fleet's one ack writer: every Ack it sends each socket's
// highest seq, where it grew since the last ack.
func (f *Fleet) ackLoop() {
	defer close(f.ackDone)
	t := time.NewTicker(f.opts.Ack)
	defer t.Stop()
	var buf []byte
	for {
		select {
		case <-f.ackStop:
			return
		case <-t.C:
		}
		for _, s := range f.Socks() {
			last := s.last.Load()
			if last <= s.acked.Load() || s.closing.Load() || s.dropped.Load() {
				continue
			}
			buf = strconv.AppendUint(append(buf[:0], `{"event":"ack","seq":`...), last, 10)
			if s.write(append(buf, '}')) == nil {
				s.acked.Store(last)
				f.acks.Add(1)
			}
		}
	}
}

// Unacked counts open sockets whose highest seq is not acked yet.
func (f *Fleet) Unacked() int {
	n := 0
	for _, s := range f.Socks() {
		if !s.dropped.Load() && s.last.Load() > s.acked.Load() {
			n++
		}
	}
	return n
}

// ReceiptCounts are the receipts the fleet sent, and the error frames it
// got (a refused receipt, rate_limited).
func (f *Fleet) ReceiptCounts() (acks, seen, errorFrames int64) {
	return f.acks.Load(), f.seenSent.Load(), f.errFrames.Load()
}

// Merchants returns the fleet's merchant ids.
func (f *Fleet) Merchants() []string { return f.merchants }

// Socks returns the open sockets (do not modify).
func (f *Fleet) Socks() []*Sock {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.socks
}

// OpenResult says how opening went.
type OpenResult struct {
	Opened     int
	Failed     int
	Elapsed    time.Duration
	Errors     map[string]int // error text (code) -> count
	Connects   Latencies      // per socket: dial start to hello
	PerGateway []int          // sockets opened on each gateway
}

// Open dials n more sockets, socket k of merchant (first+k) % len(merchants),
// spread round-robin over the gateways, with at most parallel dials in
// flight. It returns when every dial succeeded or failed, or ctx ended.
func (f *Fleet) Open(ctx context.Context, n, first, parallel int) OpenResult {
	res := OpenResult{Errors: map[string]int{}, PerGateway: make([]int, len(f.opts.URLs))}
	if n <= 0 {
		return res
	}
	parallel = max(1, min(parallel, n))
	var done, failed atomic.Int64
	prog := StartProgress(f.env.Progress, "connect", func() string {
		return Bar(done.Load(), int64(n)) + " failed " + strconv.FormatInt(failed.Load(), 10)
	})
	var emu sync.Mutex
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat Latencies
			for k := range jobs {
				s, err := f.OpenOne(ctx, first+k)
				if err != nil {
					failed.Add(1)
					emu.Lock()
					res.Errors[errKey(err)]++
					emu.Unlock()
				} else {
					lat.Add(s.ConnectDur)
					emu.Lock()
					res.PerGateway[s.Gateway]++
					emu.Unlock()
				}
				done.Add(1)
			}
			emu.Lock()
			res.Connects.Merge(&lat)
			emu.Unlock()
		}()
	}
	for k := 0; k < n && ctx.Err() == nil; k++ {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	prog.Stop()
	res.Elapsed = time.Since(start)
	res.Failed = int(failed.Load())
	res.Opened = int(done.Load()) - res.Failed
	return res
}

// OpenOne dials one socket of merchant m % len(merchants) and starts its
// reader. Sockets take the gateways in turn.
func (f *Fleet) OpenOne(ctx context.Context, m int) (*Sock, error) {
	idx := int(f.next.Add(1) - 1)
	s := &Sock{Index: idx, Merchant: m % len(f.merchants), Gateway: idx % len(f.opts.URLs), done: make(chan struct{})}
	if err := f.dial(ctx, s); err != nil {
		return nil, err
	}
	s.seer = f.opts.Seen && f.seers[s.Merchant].CompareAndSwap(false, true)
	f.start(s)
	return s, nil
}

func errKey(err error) string {
	var de *DialError
	var ne net.Error
	switch {
	case errors.As(err, &de):
		return de.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		s := err.Error()
		if len(s) > 80 {
			s = s[:80]
		}
		return s
	}
}

// dial opens s and reads its hello.
func (f *Fleet) dial(ctx context.Context, s *Sock) error {
	g := f.opts.URLs[s.Gateway]
	d := &net.Dialer{LocalAddr: f.sourceAddr(g, s.Index)}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Connect)
	defer cancel()
	t0 := time.Now()
	c, err := dialTransport(ctx, d, f.opts.Transport, g, f.tokens[s.Merchant], f.opts.Batch)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	msg, err := c.ReadMessage()
	if err != nil {
		c.CloseNow()
		return fmt.Errorf("read hello: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	var hello struct {
		Event string         `json:"event"`
		Data  wire.HelloData `json:"data"`
	}
	if err := json.Unmarshal(msg, &hello); err != nil || hello.Event != wire.EventHello {
		c.CloseNow()
		return fmt.Errorf("first frame is not hello: %.80s", msg)
	}
	if hello.Data.MerchantID != f.merchants[s.Merchant] {
		c.CloseNow()
		return fmt.Errorf("hello for merchant %q, want %q", hello.Data.MerchantID, f.merchants[s.Merchant])
	}
	s.ConnectDur = time.Since(t0)
	s.conn, s.Node, s.ConnID, s.HelloSeq = c, hello.Data.Node, hello.Data.ConnID, hello.Data.Seq
	s.Track.From = hello.Data.Seq
	return nil
}

// sourceAddr spreads sockets to loopback gateways over 127.0.0.(1+base) ..
// (base+N), so more than one source port range (about 28k ports) is
// available.
func (f *Fleet) sourceAddr(g *url.URL, idx int) net.Addr {
	if f.env.SourceIPs <= 1 && f.env.SourceBase == 0 {
		return nil
	}
	ip := net.ParseIP(g.Hostname())
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+f.env.SourceBase+idx%f.env.SourceIPs))}
}

func (f *Fleet) start(s *Sock) {
	f.mu.Lock()
	f.socks = append(f.socks, s)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(s.done)
		err := f.read(s)
		if !s.closing.Load() {
			s.err = err
			s.dropped.Store(true)
		}
	}()
}

// read is the socket's reader loop.
func (f *Fleet) read(s *Sock) error {
	for {
		msg, err := s.conn.ReadMessage()
		if err != nil {
			return err
		}
		at := f.env.Now()
		var perr error
		SplitFrames(msg, func(fr []byte) {
			h, err := ParseHead(fr)
			if err != nil {
				perr = fmt.Errorf("bad frame %.80q: %w", fr, err)
				return
			}
			if h.Seq == 0 {
				s.other.Add(1)
				if h.Event == wire.EventError {
					f.errFrames.Add(1)
				}
				return
			}
			if !s.Track.Observe(h.Seq) {
				return
			}
			s.seen.Add(1)
			if h.Seq > s.last.Load() {
				s.last.Store(h.Seq)
			}
			if s.seer && h.Event == wire.EventOrder {
				if perr = f.sendSeen(s, OrderNo(fr)); perr != nil {
					return
				}
			}
			if f.opts.Record {
				r := Receipt{Seq: h.Seq, At: at}
				if f.opts.RecordOrders {
					r.OrderNo = string(OrderNo(fr))
				}
				s.Receipts = append(s.Receipts, r)
			}
			if f.opts.OnFrame != nil {
				f.opts.OnFrame(s, h.Seq)
			}
		})
		if perr != nil {
			s.conn.CloseNow()
			return perr
		}
	}
}

// sendSeen marks an order seen from s.
func (f *Fleet) sendSeen(s *Sock, orderNo []byte) error {
	if len(orderNo) == 0 {
		return errors.New("order frame without orderNo")
	}
	msg := append(append([]byte(`{"event":"seen","data":{"orderNo":"`), orderNo...), `"}}`...)
	if err := s.write(msg); err != nil {
		return fmt.Errorf("send seen: %w", err)
	}
	f.seenSent.Add(1)
	return nil
}

// Seen is the number of fresh stream frames all sockets got so far.
func (f *Fleet) Seen() int64 {
	var n int64
	for _, s := range f.Socks() {
		n += s.seen.Load()
	}
	return n
}

// Dropped counts sockets whose reader stopped on its own (closed by the
// server, or a protocol error) rather than by the fleet.
func (f *Fleet) Dropped() int {
	n := 0
	for _, s := range f.Socks() {
		if s.dropped.Load() {
			n++
		}
	}
	return n
}

// WaitSeen polls until Seen reaches want or ctx ends (the drain deadline);
// it reports whether it got there.
func (f *Fleet) WaitSeen(ctx context.Context, want int64) bool {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if f.Seen() >= want {
			return true
		}
		select {
		case <-ctx.Done():
			return f.Seen() >= want
		case <-t.C:
		}
	}
}

// CloseSock closes one socket of the fleet and waits for its reader.
func (f *Fleet) CloseSock(s *Sock) {
	if s.closing.Swap(true) {
		<-s.done
		return
	}
	s.conn.Close()
	<-s.done
}

// Close stops the acks, closes every socket, in parallel, and waits for all
// readers. Afterwards each Sock's Track, Receipts and Err may be read.
func (f *Fleet) Close() {
	f.stopAcks.Do(func() { close(f.ackStop) })
	<-f.ackDone
	closeAll(f.Socks())
	f.wg.Wait()
}

func closeAll(ss []*Sock) {
	var wg sync.WaitGroup
	ch := make(chan *Sock)
	for range min(64, max(1, len(ss))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				if !s.closing.Swap(true) {
					s.conn.Close()
				}
				<-s.done
			}
		}()
	}
	for _, s := range ss {
		ch <- s
	}
	close(ch)
	wg.Wait()
}

// Drops summarises why sockets stopped early: error text -> count.
func Drops(ss []*Sock) map[string]int {
	m := map[string]int{}
	for _, s := range ss {
		if s.err == nil {
			continue
		}
		var ce *CloseError
		switch {
		case errors.As(s.err, &ce):
			m["close "+strconv.Itoa(ce.Code)]++
		case errors.Is(s.err, io.EOF), errors.Is(s.err, io.ErrUnexpectedEOF):
			m["eof"]++
		default:
			m[errKey(s.err)]++
		}
	}
	return m
}
