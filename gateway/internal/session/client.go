package session

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"orderpush/gateway/internal/metrics"
	"orderpush/gateway/internal/orderapi"
	"orderpush/gateway/internal/session/sendq"
	"orderpush/pkg/logging"
	"orderpush/pkg/wire"
)

// processTimeout bounds one forwarded process call.
const processTimeout = 10 * time.Second

// Prebuilt replies: a flood must not cost an allocation per message.
var (
	pongFrame        = sendq.Build(wire.EventPong, nil)
	rateLimitedFrame = errorFrame(wire.CodeRateLimited, "too many messages from this connection (CLIENT_MSG_RATE); slow down or the connection is closed")
)

// Handle acts on one client message (PROTOCOL.md "Merchant socket",
// "Receipts and attention"). Every message counts against CLIENT_MSG_RATE
// before anything else is done with it; one over the limit is dropped, a
// flood ends the session with Policy. Bad messages get an error frame and
// the session stays open. A process message blocks until the order API
// answered (at most 10 s); ack and seen are handed to the receipts
// forwarder and get no answer. Call it from the connection's reading side,
// one message at a time.
func (s *Session) Handle(data []byte) {
	if s.lim == nil {
		s.lim = newLimiter(s.cfg.MsgRate)
	}
	switch s.lim.take(time.Now()) {
	case allowed:
	case refused:
		s.m.ClientFramesLimited.Inc()
		return
	case refusedNotice:
		s.m.ClientFramesLimited.Inc()
		s.reply(rateLimitedFrame)
		return
	case flood:
		s.m.ClientFramesLimited.Inc()
		if s.Close(Policy, "message flood") {
			s.m.FloodCloses.Inc()
			s.logf(slog.LevelInfo, "closing flooding connection")
		}
		return
	}
	f, err := wire.ParseClient(data)
	if err != nil {
		s.reply(errorFrame(wire.CodeInvalidFrame, err.Error()))
		return
	}
	switch f.Event {
	case wire.EventPing:
		s.reply(pongFrame)
	case wire.EventProcess:
		s.process(f.OrderNo)
	case wire.EventAck:
		s.ack(f.Seq)
	case wire.EventSeen:
		if s.rcpt != nil {
			s.rcpt.Seen(s.merchant, f.OrderNo)
		}
	}
}

// ack forwards an ack, unless it claims more than this socket was sent: a
// client must not mark orders delivered that never reached it. Such an ack
// is refused whole (invalid_field), not clamped, so a client bug shows.
func (s *Session) ack(seq uint64) {
	if told := s.told.Load(); seq > told {
		s.m.ReceiptsForwarded.WithLabelValues(metrics.ReceiptAck, "rejected").Inc()
		s.reply(errorFrame(wire.CodeInvalidField,
			"ack seq "+strconv.FormatUint(seq, 10)+" is above "+strconv.FormatUint(told, 10)+", the last seq this connection was sent"))
		return
	}
	if s.rcpt != nil {
		s.rcpt.Ack(s.merchant, seq)
	}
}

// process forwards a process message. Success shows as the order.processed
// event from the stream; a refusal as an error frame with the API's code.
func (s *Session) process(orderNo string) {
	if s.proc == nil {
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		s.reply(errorFrame(wire.CodeUnavailable, "order processing is not configured on this gateway (ORDERAPI_URL)"))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, processTimeout)
	defer cancel()
	err := s.proc.Process(ctx, orderNo, s.bearer)
	var apiErr *orderapi.Error
	switch {
	case err == nil:
		s.m.ProcessForwards.WithLabelValues("ok").Inc()
	case errors.As(err, &apiErr):
		s.m.ProcessForwards.WithLabelValues("rejected").Inc()
		s.reply(errorFrame(apiErr.Code, apiErr.Message))
	default:
		s.m.ProcessForwards.WithLabelValues("error").Inc()
		s.logf(slog.LevelWarn, "process forward failed", slog.String(logging.KeyOrderNo, orderNo), logging.Err(err))
		s.reply(errorFrame(wire.CodeUnavailable, "the order api did not answer; try again"))
	}
}

// errorFrame is an error frame with its head.
func errorFrame(code, msg string) sendq.Entry {
	return sendq.Build(wire.EventError, wire.ErrorData{Code: code, Message: msg})
}

// reply queues a frame for this session only, or hands it to Answer.
func (s *Session) reply(e sendq.Entry) {
	if s.answer != nil {
		*s.answer = e.Data
		return
	}
	if !s.TrySend(e) {
		s.Overflow()
	}
}
