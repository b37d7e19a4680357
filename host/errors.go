package host

import (
	"errors"
	"net/http"
	"strings"
	"syscall"
)

// The kinds of failure the daemon reports; each maps to one HTTP status.
// Errors from Host wrap one of them (errors.Is).
var (
	ErrInvalid     = errors.New("invalid request")              // 400
	ErrLimit       = errors.New("too many sandboxes")           // 403
	ErrNotFound    = errors.New("no such sandbox")              // 404
	ErrConflict    = errors.New("conflict")                     // 409
	ErrGuest       = errors.New("guest unreachable")            // 502
	ErrUnavailable = errors.New("out of file descriptors")      // 503
	ErrClosed      = errors.New("host daemon is shutting down") // 503
)

// kindError gives an error its kind without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error { return &kindError{kind: kind, err: err} }

func kindf(kind error, msg string) error { return &kindError{kind: kind, err: errors.New(msg)} }

// isNoFD reports running out of descriptors, which the daemon answers with
// a 503 naming RLIMIT_NOFILE rather than a hang or a bare errno. A dial's
// retry loop keeps only the text of its last attempt, hence the fallback.
func isNoFD(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		strings.Contains(err.Error(), syscall.EMFILE.Error()) || strings.Contains(err.Error(), syscall.ENFILE.Error())
}

// noFD wraps an out-of-descriptors error with what to do about it.
func noFD(what string, err error) error {
	return withKind(ErrUnavailable, errors.New(what+": out of file descriptors ("+err.Error()+"); raise the daemon's RLIMIT_NOFILE (run it as root, or ulimit -n) or remove sandboxes"))
}

// Status is the HTTP status the control API answers err with.
func Status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrLimit):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrGuest):
		return http.StatusBadGateway
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
