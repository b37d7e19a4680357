package client

import (
	"errors"
	"fmt"
)

// Every error the package returns names it once, at the front ("client:
// …"), however many of its layers it passed through: a Send error inside an
// Exec error reads "client: exec "sh" (id 1): sending …: connection
// closed", not "client: exec …: client: sending …: client: …".

// A clientError is one of the package's own errors; err holds the message
// without the prefix.
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

func newError(msg string) error { return &clientError{errors.New(msg)} }

// errorf is fmt.Errorf with the prefix in front, showing the package's own
// errors among args without theirs (they stay in the chain for errors.Is).
func errorf(format string, args ...any) error {
	for i, a := range args {
		if ce, ok := a.(*clientError); ok {
			args[i] = unprefixed{ce}
		}
	}
	return &clientError{fmt.Errorf(format, args...)}
}

type unprefixed struct{ ce *clientError }

func (u unprefixed) Error() string { return u.ce.err.Error() }
func (u unprefixed) Unwrap() error { return u.ce }
