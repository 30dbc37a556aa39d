package session

// Answer is Handle for a transport whose client messages each ask for an
// answer (a socket.io event with an acknowledgement callback): it returns
// the frame Handle would have queued for the message (pong, an error
// frame), or nil when the message was acted on without one. A message
// refused by CLIENT_MSG_RATE answers rate_limited, every time, since the
// client waits for each answer; the flood rules still close the session.
// The same rules as Handle apply: call it from the reading side, one
// message at a time.
func (s *Session) Answer(data []byte) []byte {
	var answer []byte
	s.answer = &answer
	s.Handle(data)
	s.answer = nil
	if s.lim.verdict != allowed {
		return rateLimitedFrame.Data
	}
	return answer
}
