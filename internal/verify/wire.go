package verify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wire is a load worker's own connection for plain-HTTP targets with
// keep-alive (both models): one HTTP/1.1 connection, the request written
// and the response read in the worker's own goroutine. net/http runs two goroutines per
// connection (a read loop and a write loop) and hands every request and
// response between them and the caller; on loopback those hand-offs cost
// more than the request: back to back they made verify send at about 0.65x
// bombardier's rate, and paced it spent about 90 µs of CPU per request
// (bench/verify.sh). The request is encoded once.
//
// What it does as net/http does: the timeout bounds each request from
// connect to the end of the body; a 1xx answer is skipped; "Connection:
// close" (or HTTP/1.0) closes the connection after the body; a reused
// connection that turns out closed before any byte of the answer is retried
// once on a new connection for idempotent methods. Errors keep their types
// (syscall errors, io.EOF, timeouts), so Classify reads them alike.
type wire struct {
	addr    string
	req     []byte
	head    *http.Request // what http.ReadResponse needs: the method
	timeout time.Duration
	dialer  net.Dialer
	c       net.Conn
	br      *bufio.Reader
}

// newWire prepares the wire for t; ok=false when the target needs net/http
// (https, a URL it cannot encode).
func newWire(t Target, method, host string, timeout time.Duration) (*wire, bool) {
	u, err := url.Parse(t.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || !token(method) || !fieldValue(host) {
		return nil, false
	}
	for k, vs := range t.Header {
		if !token(k) {
			return nil, false
		}
		for _, v := range vs {
			if !fieldValue(v) {
				return nil, false
			}
		}
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if host == "" {
		host = u.Host
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Go-http-client/1.1\r\n", method, u.RequestURI(), host)
	for k, vs := range t.Header {
		if http.CanonicalHeaderKey(k) == "Host" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if len(t.Body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		fmt.Fprintf(&b, "Content-Length: %s\r\n", strconv.Itoa(len(t.Body)))
	}
	b.WriteString("\r\n")
	b.Write(t.Body)
	return &wire{
		addr:    addr,
		req:     b.Bytes(),
		head:    &http.Request{Method: method},
		timeout: timeout,
		dialer:  net.Dialer{KeepAlive: 30 * time.Second},
	}, true
}

// close drops the connection.
func (w *wire) close() {
	if w.c != nil {
		w.c.Close()
		w.c, w.br = nil, nil
	}
}

// do sends the request and reads the answer: the status code and the body's
// length.
func (w *wire) do() (code int, n int64, err error) {
	deadline := time.Now().Add(w.timeout)
	code, n, err, retry := w.try(deadline)
	if retry && idempotent(w.head.Method) {
		code, n, err, _ = w.try(deadline)
	}
	return code, n, err
}

// try is one attempt; retry reports that a reused connection was found
// closed before any byte of the answer.
func (w *wire) try(deadline time.Time) (code int, n int64, err error, retry bool) {
	reused := w.c != nil
	if !reused {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		c, err := w.dialer.DialContext(ctx, "tcp", w.addr)
		cancel()
		if err != nil {
			return 0, 0, err, false
		}
		w.c, w.br = c, bufio.NewReaderSize(c, 4096)
	}
	w.c.SetDeadline(deadline)
	if _, err := w.c.Write(w.req); err != nil {
		w.close()
		return 0, 0, err, reused
	}
	var resp *http.Response
	for {
		if reused {
			if _, err := w.br.Peek(1); err != nil {
				w.close()
				return 0, 0, err, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
			}
		}
		resp, err = http.ReadResponse(w.br, w.head)
		if err != nil {
			w.close()
			return 0, 0, err, false
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp.Body.Close() // 1xx: the real answer follows
	}
	n, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		w.close()
	}
	return resp.StatusCode, n, err, false
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// token reports whether s is a non-empty HTTP token (a method, a header
// name); anything else is left to net/http, which rejects it.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// fieldValue reports whether s can be sent as a header value as it is.
func fieldValue(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }
