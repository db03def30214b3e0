package adapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
)

// poolName is what a pool name may hold (the LoadBalancer CRD's pattern).
var poolName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// ValidPool reports whether name is a pool name the protocol accepts.
func ValidPool(name string) error {
	if !poolName.MatchString(name) {
		return fmt.Errorf("pool %q: want 1 to 128 of A-Z a-z 0-9 _ . : -", name)
	}
	return nil
}

// DecodeStatusRequest reads and checks a status request body strictly:
// an unknown field, a wrong type, trailing data or an invalid target is an
// error naming the field.
func DecodeStatusRequest(body []byte) (StatusRequest, error) {
	var req StatusRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	return req, validateKnown(req.Known)
}

// DecodeChangesRequest reads and checks a changes request body strictly.
func DecodeChangesRequest(body []byte) (ChangesRequest, error) {
	var req ChangesRequest
	if err := decodeStrict(body, &req); err != nil {
		return req, err
	}
	if err := validateKnown(req.Known); err != nil {
		return req, err
	}
	if len(req.Changes) == 0 {
		return req, errors.New("changes: want at least one change")
	}
	for i, c := range req.Changes {
		switch c.Op {
		case OpRegister, OpEnable, OpDrain, OpDeregister:
		case "":
			return req, fmt.Errorf("changes[%d].op: missing (want register, enable, drain or deregister)", i)
		default:
			return req, fmt.Errorf("changes[%d].op: %q is not register, enable, drain or deregister", i, c.Op)
		}
		orphan := strings.HasPrefix(c.Target.ID, "slot:") && (c.Op == OpDrain || c.Op == OpDeregister)
		if err := validateTarget(fmt.Sprintf("changes[%d].target", i), c.Target, orphan); err != nil {
			return req, err
		}
	}
	return req, nil
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}

// jsonError rewrites encoding/json's errors to name the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return fmt.Errorf("request body: want a JSON object, got %s", te.Value)
		}
		return fmt.Errorf("%s: want %s, got %s", te.Field, jsonType(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("request body: invalid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return errors.New("request body: empty (want a JSON object)")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("request body: JSON ends early")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s", f)
	}
	// Errors of a field's own decoder (Duration) arrive without a path.
	return fmt.Errorf("request body: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return kind
}

func validateKnown(known []Target) error {
	seen := make(map[string]int, len(known))
	for i, t := range known {
		where := fmt.Sprintf("known[%d]", i)
		if err := validateTarget(where, t, false); err != nil {
			return err
		}
		if j, dup := seen[t.ID]; dup {
			return fmt.Errorf("%s.id: %q is also known[%d]", where, t.ID, j)
		}
		seen[t.ID] = i
	}
	return nil
}

// validateTarget checks a target; an orphan's synthetic ID (drained or
// deregistered) needs no address.
func validateTarget(where string, t Target, orphan bool) error {
	switch {
	case t.ID == "":
		return fmt.Errorf("%s.id: missing", where)
	case len(t.ID) > 253:
		return fmt.Errorf("%s.id: %d characters, want at most 253", where, len(t.ID))
	case orphan && t.IP == "" && t.Port == 0:
		return nil
	case net.ParseIP(t.IP) == nil:
		return fmt.Errorf("%s.ip: %q is not an IP address", where, t.IP)
	case t.Port < 1 || t.Port > 65535:
		return fmt.Errorf("%s.port: %d out of range 1-65535", where, t.Port)
	}
	if c := t.Check; c != nil {
		switch {
		case c.Rise < 0:
			return fmt.Errorf("%s.check.rise: %d is negative", where, c.Rise)
		case c.Fall < 0:
			return fmt.Errorf("%s.check.fall: %d is negative", where, c.Fall)
		case c.Port < 0 || c.Port > 65535:
			return fmt.Errorf("%s.check.port: %d out of range 0-65535", where, c.Port)
		}
	}
	return nil
}
