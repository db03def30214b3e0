package graceful

import (
	"net"
	"sync"
)

// connSet tracks the open connections of one HTTP server, so that hijacked
// connections (WebSocket, raw protocols), which http.Server.Shutdown neither
// waits for nor closes, can be waited for and closed at the deadline.
type connSet struct {
	mu       sync.Mutex
	open     map[*trackedConn]bool // value: hijacked
	changed  chan struct{}         // closed and replaced on every removal
	accepted int64
}

func newConnSet() *connSet {
	return &connSet{open: map[*trackedConn]bool{}, changed: make(chan struct{})}
}

func (s *connSet) add(c *trackedConn) {
	s.mu.Lock()
	s.open[c] = false
	s.accepted++
	s.mu.Unlock()
}

func (s *connSet) remove(c *trackedConn) {
	s.mu.Lock()
	if _, ok := s.open[c]; ok {
		delete(s.open, c)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
}

func (s *connSet) markHijacked(c *trackedConn) {
	s.mu.Lock()
	if _, ok := s.open[c]; ok {
		s.open[c] = true
	}
	s.mu.Unlock()
}

// hijacked returns the open hijacked connections and a channel closed at the
// next removal.
func (s *connSet) hijacked() ([]*trackedConn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*trackedConn
	for c, h := range s.open {
		if h {
			out = append(out, c)
		}
	}
	return out, s.changed
}

// trackingListener wraps accepted connections in trackedConn.
type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, set: l.set}
	l.set.add(tc)
	return tc, nil
}

// trackedConn removes itself from its set when closed, by the server or by
// the handler that hijacked it.
type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.set.remove(c) })
	return err
}

// unwrapConn returns the trackedConn under c (c itself, or under a *tls.Conn).
func unwrapConn(c net.Conn) *trackedConn {
	for range 4 {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
