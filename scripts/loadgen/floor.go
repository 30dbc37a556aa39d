package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"orderpush/pkg/rediskey"
	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// RedisFloorResult is a pub/sub floor.
type RedisFloorResult struct {
	Latency   Summary
	Published int
	Received  int
	Pace      PaceResult
}

// RedisFloor measures publish -> a plain go-redis subscriber, at rate for
// dur over channels channels (one per merchant of the scenario it is the
// floor of), with order frames of the real size and up to workers publishes
// in flight: the same pacing and client as the gateway phase, minus the
// gateway. Without script each frame is a bare PUBLISH (the raw floor); with
// script it goes through the publish script (history, state, PUBLISH) like
// a Redis-direct frame, so the two floors side by side are what the script
// itself costs, apart from the gateways and sockets running at the time.
// Job i is merchant i % channels's frame i / channels + 1, as in orderFlow.
func RedisFloor(ctx context.Context, e *Env, channels int, rate float64, dur time.Duration, workers int, script bool) (RedisFloorResult, error) {
	if err := e.NeedRedis(); err != nil {
		return RedisFloorResult{}, err
	}
	channels = max(1, channels)
	scope, label := "floor", "redis floor"
	if script {
		scope, label = "sfloor", "script floor"
	}
	ids := make([]string, channels)
	names := make([]string, channels)
	idx := make(map[string]int, channels)
	for i := range ids {
		ids[i] = e.MerchantID(scope, i)
		names[i] = rediskey.Channel(ids[i])
		idx[names[i]] = i
	}
	ps := e.Redis.Subscribe(ctx)
	defer ps.Close()
	if err := ps.Subscribe(ctx, names...); err != nil {
		return RedisFloorResult{}, fmt.Errorf("floor subscribe: %w", err)
	}
	for range names {
		if _, err := ps.Receive(ctx); err != nil {
			return RedisFloorResult{}, fmt.Errorf("floor subscribe: %w", err)
		}
	}
	total := int(rate * dur.Seconds())
	sendAt := make([]atomic.Int64, total)
	var lat Latencies
	var received atomic.Int64
	recvDone := make(chan struct{})
	ch := ps.Channel(redis.WithChannelSize(1 << 16))
	go func() {
		defer close(recvDone)
		for msg := range ch {
			at := e.Now()
			m, ok := idx[msg.Channel]
			h, err := ParseHead([]byte(msg.Payload))
			if !ok || err != nil || h.Seq == 0 {
				continue
			}
			i := int(h.Seq-1)*channels + m
			if i >= total {
				continue
			}
			lat.Add(at - time.Duration(sendAt[i].Load()))
			received.Add(1)
		}
	}()
	var published atomic.Int64
	prog := StartProgress(e.Progress, label, func() string {
		return Bar(received.Load(), int64(total))
	})
	pr := Pace(ctx, rate, dur, total, workers, func(ctx context.Context, i int) {
		m := i % channels
		seq := uint64(i/channels + 1)
		fr := OrderFrame(ids[m], seq, time.Now())
		sendAt[i].Store(int64(e.Now()))
		var err error
		if script {
			_, err = e.Stream.Publish(ctx, ids[m], seq, int64(seq), fr)
		} else {
			err = e.Redis.Publish(ctx, names[m], fr).Err()
		}
		if err == nil {
			published.Add(1)
		}
	})
	drain, cancel := context.WithTimeout(ctx, 5*time.Second)
	for received.Load() < published.Load() && drain.Err() == nil {
		waitTick(drain, 5*time.Millisecond)
	}
	cancel()
	prog.Stop()
	_ = ps.Close() // ends ch, then the receiver
	<-recvDone
	return RedisFloorResult{Latency: lat.Summary(), Published: int(published.Load()), Received: int(received.Load()), Pace: pr}, nil
}

// waitTick sleeps d or until ctx ends: the poll interval of a wait that has a
// deadline.
func waitTick(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// WSFloor is a minimal in-process WebSocket server that writes pre-encoded
// frames to every socket it holds: what fan-out costs with nothing but
// coder/websocket between the bytes and the sockets. Writers are sharded
// over a few goroutines, each writing to its sockets in turn.
type WSFloor struct {
	URL *url.URL

	srv      *http.Server
	ln       net.Listener
	verifier *token.Verifier
	batch    bool

	mu     sync.Mutex
	conns  []*websocket.Conn
	shards []chan []byte
	wg     sync.WaitGroup
	wrote  atomic.Int64
}

// StartWSFloor listens on a free loopback port. With batch, a writer joins
// every frame already queued into one message, like ?batch=1 on a gateway.
func StartWSFloor(secret []byte, batch bool) (*WSFloor, error) {
	v, err := token.NewVerifier(token.Config{Secret: secret})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("floor listen: %w", err)
	}
	f := &WSFloor{ln: ln, verifier: v, batch: batch,
		URL: &url.URL{Scheme: "ws", Host: ln.Addr().String(), Path: "/ws"}}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.accept), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// accept verifies the token (as a gateway must), upgrades and says hello.
func (f *WSFloor) accept(w http.ResponseWriter, r *http.Request) {
	c, err := f.verifier.Verify(r.URL.Query().Get("token"))
	if err != nil || c.Role != token.RoleMerchant {
		http.Error(w, `{"error":{"code":"unauthorized","message":"bad token"}}`, http.StatusUnauthorized)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock()
	id := len(f.conns)
	f.conns = append(f.conns, conn)
	f.mu.Unlock()
	conn.CloseRead(context.Background())
	hello := wire.MustEncode(wire.EventHello, 0, 0, wire.HelloData{ConnID: "floor" + strconv.Itoa(id), MerchantID: c.Subject, Node: "floor"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageText, hello)
}

// StartWriters shards the accepted sockets over n writer goroutines; call it
// once every socket is open. Each shard queues up to queue frames.
func (f *WSFloor) StartWriters(n, queue int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n = max(1, min(n, len(f.conns)))
	for s := range n {
		var mine []*websocket.Conn
		for i := s; i < len(f.conns); i += n {
			mine = append(mine, f.conns[i])
		}
		ch := make(chan []byte, queue)
		f.shards = append(f.shards, ch)
		f.wg.Add(1)
		go f.write(mine, ch)
	}
}

func (f *WSFloor) write(conns []*websocket.Conn, ch chan []byte) {
	defer f.wg.Done()
	var buf []byte
	for fr := range ch {
		msg, n := fr, 1
		if f.batch {
			buf = append(buf[:0], fr...)
		more:
			for {
				select {
				case next, ok := <-ch:
					if !ok {
						break more
					}
					buf = append(append(buf, '\n'), next...)
					n++
				default:
					break more
				}
			}
			msg = buf
		}
		// No per-write deadline: the readers are this process's own
		// sockets, and Close unblocks a stuck write with CloseNow.
		for _, c := range conns {
			if c.Write(context.Background(), websocket.MessageText, msg) == nil {
				f.wrote.Add(int64(n))
			}
		}
	}
}

// Publish queues frame for every socket.
func (f *WSFloor) Publish(frame []byte) {
	for _, ch := range f.shards {
		ch <- frame
	}
}

// Close stops the writers and the server and closes every socket.
func (f *WSFloor) Close() {
	f.mu.Lock()
	for _, ch := range f.shards {
		close(ch)
	}
	f.shards = nil
	conns := f.conns
	f.mu.Unlock()
	f.wg.Wait()
	for _, c := range conns {
		_ = c.CloseNow()
	}
	_ = f.srv.Close()
}
