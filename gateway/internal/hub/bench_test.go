package hub

import (
	"context"
	"fmt"
	"testing"

	"orderpush/gateway/internal/session/sendq"
)

// queueMember is a socket as the fan-out sees it: a real send queue.
type queueMember struct {
	id string
	q  *sendq.Queue
}

func (m *queueMember) ID() string                                    { return m.id }
func (m *queueMember) TrySend(e sendq.Entry) bool                    { return m.q.TryPush(e) }
func (m *queueMember) Send(ctx context.Context, e sendq.Entry) error { return m.q.Push(ctx, e) }
func (m *queueMember) Overflow()                                     {}

// BenchmarkFanout measures delivering one merchant event to K local
// sockets: the sequencer step plus one queue push per socket (what the Redis
// receive goroutine does per message, parsing aside: see
// BenchmarkParseFrame). Queues are drained every 128 frames, as writers
// would.
func BenchmarkFanout(b *testing.B) {
	for _, k := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("sockets=%d", k), func(b *testing.B) {
			h, _ := newTestHub(b, newSource())
			members := make([]*queueMember, k)
			for i := range members {
				members[i] = &queueMember{id: fmt.Sprint(i), q: sendq.New(256, nil)}
				s, err := h.Join(context.Background(), "m1", members[i], NoSince)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Leave()
			}
			h.mu.RLock()
			t := h.topics["m1"]
			h.mu.RUnlock()
			data := fr(1, 1)
			var batch []sendq.Entry
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				t.mu.Lock()
				h.offer(t, frame{data: data, seq: seq, ts: 1, orderSum: 1, hasSum: true})
				t.mu.Unlock()
				if seq%128 == 0 {
					for _, m := range members {
						batch, _ = m.q.Take(batch)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(k), "ns/delivery")
		})
	}
}
