package provider

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies a provider error. Codes, not Go values, cross the wire
// (the adapter protocol carries {code, instance, message}), and the
// controller decides by code: a busy target is retried, a full pool is
// told to the pod, an unreachable instance keeps gates and drains waiting.
type Code string

// Error codes.
const (
	// CodeBusy: the LB still has connections to the target (Deregister).
	CodeBusy Code = "Busy"
	// CodeConflict: the pool has a target of that ID with another address.
	CodeConflict Code = "Conflict"
	// CodePoolFull: the pool has no room for another target (HAProxy:
	// every server-template slot is taken; a target-group limit).
	CodePoolFull Code = "PoolFull"
	// CodeUnreachable: the instance (or the adapter) could not be reached
	// or did not answer in time.
	CodeUnreachable Code = "Unreachable"
	// CodeNotFound: the pool (or, for Enable, the target) does not exist
	// on the LB.
	CodeNotFound Code = "NotFound"
	// CodeInvalid: the request is malformed (a target without an address,
	// a pool name the LB refuses).
	CodeInvalid Code = "Invalid"
	// CodeInternal: anything else.
	CodeInternal Code = "Internal"
)

// Error is a provider error with a code, the instance it concerns (empty
// for the whole LB) and a message. Cause, when set, is the underlying Go
// error (not sent over the wire).
type Error struct {
	Code     Code
	Instance string
	Message  string
	Cause    error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Cause != nil {
		msg = e.Cause.Error()
	}
	if msg == "" {
		msg = string(e.Code)
	}
	if e.Instance != "" {
		return e.Instance + ": " + msg
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// Is matches another *Error by code alone, so that
// errors.Is(err, ErrPoolFull) holds for any error of that code.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Instance == "" && t.Message == "" && t.Cause == nil && t.Code == e.Code
}

// Sentinels, matched with errors.Is.
var (
	// ErrTargetBusy is returned (wrapped) by Deregister while the LB still
	// has connections to the target: it is out of rotation; try again.
	ErrTargetBusy error = &Error{Code: CodeBusy}
	// ErrConflict is returned (wrapped) by Register when the pool already
	// has a target of that ID with another address.
	ErrConflict error = &Error{Code: CodeConflict}
	// ErrPoolFull is returned (wrapped) by Register when the pool has no
	// room: its message says what to change (HAProxy: more slots).
	ErrPoolFull error = &Error{Code: CodePoolFull}
	// ErrUnreachable wraps a failure to reach an instance.
	ErrUnreachable error = &Error{Code: CodeUnreachable}
	// ErrNotFound: the pool or target does not exist on the LB.
	ErrNotFound error = &Error{Code: CodeNotFound}
	// ErrInvalid: the request is malformed.
	ErrInvalid error = &Error{Code: CodeInvalid}
)

// Errorf returns an *Error of code c for instance (may be empty), whose
// message is formatted; %w verbs set Cause.
func Errorf(c Code, instance, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: c, Instance: instance, Message: err.Error(), Cause: errors.Unwrap(err)}
}

// CodeOf returns the code of the first *Error in err's tree, CodeInternal
// for another error, "" for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Errors flattens err (joined or wrapped) into the *Errors it holds, each
// other error as CodeInternal: what the adapter sends. The text of an
// *Error wrapped with context keeps the context.
func Errors(err error) []*Error {
	for cur := err; cur != nil; {
		if e, ok := cur.(*Error); ok {
			if cur == err {
				return []*Error{e}
			}
			return []*Error{{Code: e.Code, Instance: e.Instance, Message: trimInstance(err.Error(), e.Instance), Cause: err}}
		}
		switch u := cur.(type) {
		case interface{ Unwrap() []error }:
			var out []*Error
			for _, part := range u.Unwrap() {
				out = append(out, Errors(part)...)
			}
			return out
		case interface{ Unwrap() error }:
			cur = u.Unwrap()
		default:
			cur = nil
		}
	}
	if err == nil {
		return nil
	}
	return []*Error{{Code: CodeInternal, Message: err.Error(), Cause: err}}
}

func trimInstance(msg, instance string) string {
	return strings.TrimPrefix(msg, instance+": ")
}
