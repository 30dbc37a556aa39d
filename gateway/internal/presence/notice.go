package presence

import (
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/wire"
)

// Handler is what the subscriber delivers to (package subscriber's
// Handler): the hub, for every channel but the node channel.
type Handler interface {
	Message(channel string, payload []byte)
	Resubscribed(channel string)
}

// Router is the subscriber's Handler on a replica: the replica's node
// channel goes to its Presence (notices; a resubscription means Redis came
// back, so re-register), every other channel to the hub. The subscriber,
// the hub and the Presence need each other, so the server declares a Router,
// hands it to the subscriber, and fills it with NewRouter once the others
// exist, before anything subscribes.
type Router struct {
	node string
	p    nodeHandler
	next Handler
}

// nodeHandler is a Presence of any connection type.
type nodeHandler interface {
	notice(payload []byte)
	reregister()
}

// NewRouter routes p's node channel to p and the rest to next.
func NewRouter[C Conn](p *Presence[C], next Handler) Router {
	return Router{node: p.nodeChan, p: p, next: next}
}

// Message implements subscriber.Handler.
func (r *Router) Message(channel string, payload []byte) {
	if channel == r.node {
		r.p.notice(payload)
		return
	}
	r.next.Message(channel, payload)
}

// Resubscribed implements subscriber.Handler.
func (r *Router) Resubscribed(channel string) {
	if channel == r.node {
		r.p.reregister()
		return
	}
	r.next.Resubscribed(channel)
}

// notice delivers a wire.Notice from this replica's channel to the one
// connection it names. It never blocks (it runs on the Redis receive
// goroutine).
func (p *Presence[C]) notice(payload []byte) {
	n, err := wire.ParseNotice(payload)
	if err != nil {
		p.m.Notices.WithLabelValues("bad").Inc()
		return
	}
	p.mu.Lock()
	c, ok := p.conns[n.ConnID]
	p.mu.Unlock()
	switch {
	case !ok:
		p.m.Notices.WithLabelValues("unknown_conn").Inc()
	case !c.TrySend(sendq.Entry{Data: n.Frame}):
		p.m.Notices.WithLabelValues("full").Inc()
		c.Overflow()
	default:
		p.m.Notices.WithLabelValues("delivered").Inc()
	}
}
