package verify

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Class is the outcome of one request: ClassOK or the kind of failure.
type Class string

// The classes a request ends in. Each failure class points at a different
// cause during a rollout; docs/verify.md has the table.
const (
	// ClassOK is a response with a status below 400.
	ClassOK Class = "ok"
	// Class502 is "Bad Gateway": the LB reached a backend that refused or
	// reset the connection, typically a pod that exited too early.
	Class502 Class = "http_502"
	// Class503 is "Service Unavailable": the LB had no healthy backend.
	Class503 Class = "http_503"
	// Class504 is "Gateway Timeout": the backend did not answer in time,
	// typically a pod SIGKILLed mid-request.
	Class504 Class = "http_504"
	// Class5xx is any other 5xx status.
	Class5xx Class = "http_5xx"
	// Class4xx is any 4xx status.
	Class4xx Class = "http_4xx"
	// ClassRefused is a TCP connection refused (ECONNREFUSED): nothing
	// listens on the target's port.
	ClassRefused Class = "refused"
	// ClassReset is a connection reset by the peer (ECONNRESET, or EPIPE
	// when writing to a connection the peer already reset).
	ClassReset Class = "reset"
	// ClassEOF is a connection closed by the server before a complete
	// response: typically a keep-alive connection closed while a request was
	// on its way (io.EOF, io.ErrUnexpectedEOF).
	ClassEOF Class = "eof"
	// ClassTimeout is no complete response within the request timeout.
	ClassTimeout Class = "timeout"
	// ClassOther is any other error (DNS, TLS, bad URL, ...).
	ClassOther Class = "other"
)

// failureClassesArray sizes per-bucket counters at compile time.
var failureClassesArray = [...]Class{
	Class502, Class503, Class504, Class5xx, Class4xx,
	ClassRefused, ClassReset, ClassEOF, ClassTimeout, ClassOther,
}

// FailureClasses lists every failure class in report order.
var FailureClasses = failureClassesArray[:]

// Classify returns the class of a request that ended with HTTP status code
// (0 when there was no response) and error err (nil when the whole response
// was read). An error wins over a status: a body cut short after a 200 is a
// failure.
func Classify(code int, err error) Class {
	if err != nil {
		return classifyError(err)
	}
	switch {
	case code == 502:
		return Class502
	case code == 503:
		return Class503
	case code == 504:
		return Class504
	case code >= 500:
		return Class5xx
	case code >= 400:
		return Class4xx
	case code >= 100:
		return ClassOK
	}
	return ClassOther
}

func classifyError(err error) Class {
	// Order matters: a refused or reset connection can also carry a net.Error,
	// and only a timeout carries Timeout() == true.
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ClassReset
	case isTimeout(err):
		return ClassTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassEOF
	}
	return ClassOther
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
