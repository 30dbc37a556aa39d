package order

import (
	"errors"
	"fmt"
	"time"

	"orderpush/pkg/wire"
)

// Error is a failure the client is told about: a machine code (one of
// wire.Code..., which the HTTP layer maps to a status with wire.HTTPStatus)
// and a message safe to show. Err, when set, is the internal cause, for
// logs only.
type Error struct {
	Code    string
	Message string
	Err     error
	// RetryAfter, when positive, is sent as the Retry-After header in
	// whole seconds (rate_limited).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns err's *Error, if it has one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidJSON(format string, args ...any) *Error {
	return errorf(wire.CodeInvalidJSON, format, args...)
}

// invalidField names the field first, as PROTOCOL.md asks.
func invalidField(field, format string, args ...any) *Error {
	return errorf(wire.CodeInvalidField, "%s: %s", field, fmt.Sprintf(format, args...))
}

func forbidden(format string, args ...any) *Error { return errorf(wire.CodeForbidden, format, args...) }

func notFound(format string, args ...any) *Error { return errorf(wire.CodeNotFound, format, args...) }

// unavailable reports a failed dependency: a database or Redis that does not
// answer. Nothing was half-written (the store rolls back).
func unavailable(what string, err error) *Error {
	return &Error{Code: wire.CodeUnavailable, Message: what + " unavailable, try again", Err: err}
}
