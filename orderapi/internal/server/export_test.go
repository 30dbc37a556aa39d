package server

import "net/http"

// Handler is the HTTP handler the server serves, for benchmarks that drive
// it without a socket.
func (s *Server) Handler() http.Handler { return s.http.Handler }
