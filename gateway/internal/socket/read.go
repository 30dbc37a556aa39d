package socket

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coder/websocket"

	"orderpush/gateway/internal/orderapi"
	"orderpush/gateway/internal/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// maxClientFrame is PROTOCOL.md's 64 KiB client frame limit.
const maxClientFrame = wire.MaxFrameSize

// processTimeout bounds one forwarded process call.
const processTimeout = 10 * time.Second

var pongFrame = []byte(`{"event":"pong"}`)

// readLoop reads client frames until the connection ends. It keeps reading
// so control frames (pings, pongs, close) are handled. ctx is for the
// calls a frame makes; reads get none: a cancelled read kills the
// connection without a close frame, and a read with a cancellable context
// registers a callback on it for as long as it waits.
func (s *Socket) readLoop(ctx context.Context, conn *websocket.Conn) {
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			if code := websocket.CloseStatus(err); code == -1 && !s.closing() {
				s.logf(slog.LevelDebug, "read ended", logging.Err(err))
			}
			return
		}
		s.handle(ctx, data)
	}
}

// handle answers one client frame. Bad frames get an error frame; the
// connection stays open.
func (s *Socket) handle(ctx context.Context, data []byte) {
	f, err := wire.ParseClient(data)
	if err != nil {
		s.reply(wire.ErrorFrame(wire.CodeInvalidFrame, err.Error()))
		return
	}
	switch f.Event {
	case wire.EventPing:
		s.reply(pongFrame)
	case wire.EventProcess:
		s.process(ctx, f.OrderNo)
	}
}

// process forwards a process frame. Success shows as the order.processed
// event from the stream; a refusal as an error frame with the API's code.
func (s *Socket) process(ctx context.Context, orderNo string) {
	if s.proc == nil {
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		s.reply(wire.ErrorFrame(wire.CodeUnavailable, "order processing is not configured on this gateway (ORDERAPI_URL)"))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, processTimeout)
	defer cancel()
	err := s.proc.Process(ctx, orderNo, s.bearer)
	var apiErr *orderapi.Error
	switch {
	case err == nil:
		s.m.ProcessForwards.WithLabelValues("ok").Inc()
	case errors.As(err, &apiErr):
		s.m.ProcessForwards.WithLabelValues("rejected").Inc()
		s.reply(wire.ErrorFrame(apiErr.Code, apiErr.Message))
	default:
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		s.logf(slog.LevelWarn, "process forward failed", slog.String(logging.KeyOrderNo, orderNo), logging.Err(err))
		s.reply(wire.ErrorFrame(wire.CodeUnavailable, "the order api did not answer; try again"))
	}
}

// reply queues a frame for this socket only.
func (s *Socket) reply(b []byte) {
	if !s.TrySend(sendq.Entry{Data: b}) {
		s.Overflow()
	}
}
