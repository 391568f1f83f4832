package main

// The HTTP/1.1 upgrade to SPDY/3.1 and the stream bookkeeping, as client-go's SPDY round
// tripper and apimachinery's spdy connection do them: one request, a 101, then spdystream in
// client mode; each stream waits for its SYN_REPLY before it is used.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

const (
	headerProtocolVersion  = "X-Stream-Protocol-Version"
	headerAcceptedVersions = "X-Accepted-Stream-Protocol-Versions"
	upgradeSPDY31          = "SPDY/3.1"

	// client-go waits this long for each stream's SYN_REPLY.
	streamReplyTimeout = 30 * time.Second
	handshakeTimeout   = 30 * time.Second
	// A refused upgrade's body is only printed; more than this is cut with a note.
	maxErrorBody = 64 << 10
)

// upgradeRequest describes one upgrade attempt; raw mode may change every field.
type upgradeRequest struct {
	url       string
	method    string
	upgrade   string // the Upgrade header; "" sends neither Upgrade nor Connection
	protocols []string
	extra     http.Header
}

// bufferedConn hands out what bufio read past the response headers before the socket itself:
// the server may send SPDY frames right behind its 101.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tcpConn is the socket under the wrapper, for CloseWrite-free checks (hupwatch).
func (c *bufferedConn) tcpConn() *net.TCPConn {
	tc, _ := c.Conn.(*net.TCPConn)
	return tc
}

// recvBuffer, when above 0, is the socket's receive buffer (attach --rcvbuf): a client that
// stops reading then holds little, so a test sees the server drop it without a huge flood.
var recvBuffer int

func dialUpgrade(ur upgradeRequest) (*bufferedConn, *http.Response, error) {
	u, err := url.Parse(ur.url)
	if err != nil {
		return nil, nil, fmt.Errorf("bad URL %q: %v", ur.url, err)
	}
	if u.Scheme != "http" {
		return nil, nil, fmt.Errorf("bad URL %q: scheme %q is not supported (only http)", ur.url, u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	req, err := http.NewRequest(ur.method, ur.url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bad request: %v", err)
	}
	if ur.upgrade != "" {
		req.Header.Add("Connection", "Upgrade")
		req.Header.Add("Upgrade", ur.upgrade)
	}
	// One header line per protocol, in preference order, as client-go sends them.
	for _, p := range ur.protocols {
		req.Header.Add(headerProtocolVersion, p)
	}
	for k, vs := range ur.extra {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}

	conn, err := net.DialTimeout("tcp", host, handshakeTimeout)
	if err != nil {
		return nil, nil, err // "dial tcp HOST:PORT: …" names the address
	}
	if tc, ok := conn.(*net.TCPConn); ok && recvBuffer > 0 {
		if err := tc.SetReadBuffer(recvBuffer); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("set the receive buffer: %v", err)
		}
	}
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("set deadline: %v", err)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("send upgrade request to %s: %v", host, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read upgrade response from %s: %v", host, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("clear deadline: %v", err)
	}
	return &bufferedConn{Conn: conn, r: br}, resp, nil
}

// readErrorBody reads a refused upgrade's body, bounded.
func readErrorBody(resp *http.Response) string {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	text := strings.TrimSpace(string(b))
	if len(b) > maxErrorBody {
		text = strings.TrimSpace(string(b[:maxErrorBody])) + " [body cut at 64 KiB]"
	}
	if err != nil && len(b) == 0 {
		return fmt.Sprintf("(body unreadable: %v)", err)
	}
	return text
}

// isSPDYUpgrade is client-go's check: 101, Connection names upgrade, Upgrade names SPDY/3.1.
func isSPDYUpgrade(resp *http.Response) bool {
	conn := strings.ToLower(resp.Header.Get("Connection"))
	up := strings.ToLower(resp.Header.Get("Upgrade"))
	return resp.StatusCode == http.StatusSwitchingProtocols &&
		strings.Contains(conn, "upgrade") && strings.Contains(up, strings.ToLower(upgradeSPDY31))
}

// session is one upgraded connection and the streams this client opened on it.
type session struct {
	raw      *bufferedConn
	conn     *spdystream.Connection
	protocol string // what the server chose; "" when it named none

	mu      sync.Mutex
	streams map[uint32]*spdystream.Stream
	closed  bool
}

// openSession upgrades rawurl offering protocols and starts spdystream's frame loop.
func openSession(rawurl string, protocols []string) (*session, error) {
	raw, resp, err := dialUpgrade(upgradeRequest{url: rawurl, method: http.MethodPost,
		upgrade: upgradeSPDY31, protocols: protocols})
	if err != nil {
		return nil, err
	}
	if !isSPDYUpgrade(resp) {
		body := readErrorBody(resp)
		raw.Close()
		msg := fmt.Sprintf("unable to upgrade connection: %s", resp.Status)
		if a := resp.Header.Get(headerAcceptedVersions); a != "" {
			msg += fmt.Sprintf(" (server accepts %s)", a)
		}
		if body != "" {
			msg += ": " + body
		}
		return nil, errors.New(msg)
	}
	conn, err := spdystream.NewConnection(raw, false)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("start SPDY session: %v", err)
	}
	s := &session{raw: raw, conn: conn, protocol: resp.Header.Get(headerProtocolVersion),
		streams: make(map[uint32]*spdystream.Stream)}
	// A CRI streaming server never opens streams towards the client.
	go conn.Serve(func(st *spdystream.Stream) { _ = st.Refuse() })
	return s, nil
}

// createStream opens a stream and waits for its SYN_REPLY, or for the session to end.
func (s *session) createStream(h http.Header) (*spdystream.Stream, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("session closed")
	}
	s.mu.Unlock()
	st, err := s.conn.CreateStream(h, nil, false)
	if err != nil {
		return nil, fmt.Errorf("create %s stream: %v", h.Get("streamType"), err)
	}
	replied := make(chan error, 1)
	go func() { replied <- st.WaitTimeout(streamReplyTimeout) }()
	select {
	case err = <-replied:
	case <-s.conn.CloseChan():
		err = errors.New("connection closed before the reply")
	}
	if err != nil {
		if err == spdystream.ErrReset {
			err = errors.New("refused by the server (RST_STREAM)")
		} else if err == spdystream.ErrTimeout {
			err = fmt.Errorf("no SYN_REPLY within %v", streamReplyTimeout)
		}
		return nil, fmt.Errorf("create %s stream: %v", h.Get("streamType"), err)
	}
	s.mu.Lock()
	s.streams[st.Identifier()] = st
	s.mu.Unlock()
	return st, nil
}

// forget drops streams from the bookkeeping (client-go's RemoveStreams: no frame is sent).
func (s *session) forget(sts ...*spdystream.Stream) {
	s.mu.Lock()
	for _, st := range sts {
		delete(s.streams, st.Identifier())
	}
	s.mu.Unlock()
}

// done is closed when the server's side of the session ends (EOF, reset or GOAWAY).
func (s *session) done() <-chan bool { return s.conn.CloseChan() }

// close resets every open stream, then sends GOAWAY and closes the socket, as
// apimachinery's connection.Close does, so nothing waits for a graceful drain.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	sts := s.streams
	s.streams = nil
	s.mu.Unlock()
	for _, st := range sts {
		_ = st.Reset() // the socket is closed next; a failed RST changes nothing
	}
	_ = s.conn.Close() // GOAWAY; its error is the socket's, which is closed right after
	_ = s.raw.Close()
}
