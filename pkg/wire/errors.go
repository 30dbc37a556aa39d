package wire

import "net/http"

// Error codes: the machine code of every HTTP error body and of the error
// frame (PROTOCOL.md, "Errors"). Both services use these constants; no
// other package spells a code. The list is append-only: clients switch on
// these strings.
const (
	// CodeInvalidJSON (400): a body that is not JSON, has trailing data or
	// is empty.
	CodeInvalidJSON = "invalid_json"
	// CodeInvalidField (400): an unknown, missing or malformed field or
	// parameter; the message names it.
	CodeInvalidField = "invalid_field"
	// CodeInvalidSince (400): a socket's ?since= that is not a
	// non-negative integer.
	CodeInvalidSince = "invalid_since"
	// CodeUnauthorized (401): a bad, expired or missing token.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden (403): a valid token of the wrong role or for another
	// merchant's or member's data.
	CodeForbidden = "forbidden"
	// CodeOriginNotAllowed (403): a socket request whose Origin matches
	// none of ALLOWED_ORIGINS.
	CodeOriginNotAllowed = "origin_not_allowed"
	// CodeNotFound (404): no such order, connection or route.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed (405): a known path with another method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodePayloadTooLarge (413): a body over 64 KiB.
	CodePayloadTooLarge = "payload_too_large"
	// CodeRateLimited (429): over CONNECT_RATE or ORDER_RATE; also the
	// error frame of a socket over CLIENT_MSG_RATE.
	CodeRateLimited = "rate_limited"
	// CodeTooManyConnections (429): the merchant already has
	// MAX_CONNS_PER_MERCHANT sockets.
	CodeTooManyConnections = "too_many_connections"
	// CodeInternal (500): a bug; the message says nothing more.
	CodeInternal = "internal"
	// CodeUnavailable (503): a dependency does not answer, or the replica
	// drains; nothing was half-written.
	CodeUnavailable = "unavailable"
	// CodeInvalidFrame is the error frame's code for a client frame that
	// is not one the socket understands. It never travels over HTTP.
	CodeInvalidFrame = "invalid_frame"
)

// HTTPStatus is the status an HTTP error with code carries; the one place
// that maps codes to statuses. An unknown code is a bug: 500.
func HTTPStatus(code string) int {
	switch code {
	case CodeInvalidJSON, CodeInvalidField, CodeInvalidSince, CodeInvalidFrame:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodeOriginNotAllowed:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited, CodeTooManyConnections:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// ErrorData is the data of an error frame and the inside of an HTTP error
// body.
type ErrorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody is the body of every HTTP error answer of both services:
// {"error":{"code":"<code>","message":"<human text>"}}.
type ErrorBody struct {
	Error ErrorData `json:"error"`
}

// NewErrorBody returns the error body for code and msg.
func NewErrorBody(code, msg string) ErrorBody {
	return ErrorBody{Error: ErrorData{Code: code, Message: msg}}
}
