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

	"orderpush/pkg/token"
	"orderpush/pkg/wire"
)

// RedisFloorResult is the raw pub/sub floor.
type RedisFloorResult struct {
	Latency   Summary
	Published int
	Received  int
	Pace      PaceResult
}

// RedisFloor measures PUBLISH -> a plain go-redis subscriber, at rate for
// dur over channels channels (one per merchant of the scenario it is the
// floor of), with order frames of the real size and up to workers publishes
// in flight: the same pacing as the gateway phase, minus the gateway.
func RedisFloor(ctx context.Context, e *Env, channels int, rate float64, dur time.Duration, workers int) (RedisFloorResult, error) {
	if err := e.NeedRedis(); err != nil {
		return RedisFloorResult{}, err
	}
	channels = max(1, channels)
	names := make([]string, channels)
	for i := range names {
		names[i] = "loadgen:floor:" + e.RunID + ":" + strconv.Itoa(i)
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
			h, err := ParseHead([]byte(msg.Payload))
			if err != nil || h.Seq == 0 || h.Seq > uint64(total) {
				continue
			}
			lat.Add(at - time.Duration(sendAt[h.Seq-1].Load()))
			received.Add(1)
		}
	}()
	var published atomic.Int64
	prog := StartProgress(e.Progress, "redis floor", func() string {
		return Bar(received.Load(), int64(total))
	})
	pr := Pace(ctx, rate, dur, total, workers, func(ctx context.Context, i int) {
		fr := OrderFrame(names[i%channels], uint64(i+1), time.Now())
		sendAt[i].Store(int64(e.Now()))
		if err := e.Redis.Publish(ctx, names[i%channels], fr).Err(); err == nil {
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
