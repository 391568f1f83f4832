package main

// `ukstream portforward`: kubectl port-forward's client side (client-go tools/portforward).
// Each accepted local connection gets an `error` stream, half-closed at once since the client
// never writes to it, and a `data` stream, both with the same `port` and `requestid`.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/moby/spdystream"
)

const (
	protocolPortForward = "portforward.k8s.io"
	// The error stream carries one message; more than this is a protocol error.
	maxErrorStream = 1 << 20
)

type forwarder struct {
	s            *session
	port         int
	closeOnError bool

	mu     sync.Mutex
	nextID int
}

func runPortForward(rawurl, listen string, port int, closeOnError bool) int {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fail("portforward: listen on %s: %v", listen, err)
	}
	defer ln.Close()
	s, err := openSession(rawurl, []string{protocolPortForward})
	if err != nil {
		return fail("portforward: %v", err)
	}
	defer s.close()
	if s.protocol != protocolPortForward {
		return fail("portforward: unable to negotiate protocol: client supports %q, server returned %q",
			protocolPortForward, s.protocol)
	}
	// Printed only once the session is up, so a caller that reads it can connect at once.
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr().String())
	_ = os.Stdout.Sync() // a pipe has nothing to sync; Sync only matters for a file

	f := &forwarder{s: s, port: port, closeOnError: closeOnError}
	accepted := make(chan error, 1)
	go func() { accepted <- f.acceptLoop(ln) }()
	sig := notifySignals()
	select {
	case <-sig:
		return 0
	case <-s.done():
		return fail("portforward: connection closed by the server")
	case err := <-accepted:
		return fail("portforward: accept on %s: %v", ln.Addr(), err)
	}
}

func (f *forwarder) acceptLoop(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		f.mu.Lock()
		id := f.nextID
		f.nextID++
		f.mu.Unlock()
		go f.handle(c.(*net.TCPConn), id)
	}
}

// readErrorStream returns the error stream's whole text, bounded.
func readErrorStream(st io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(st, maxErrorStream+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxErrorStream {
		return "", fmt.Errorf("error stream longer than %d bytes", maxErrorStream)
	}
	return string(b), nil
}

func (f *forwarder) handle(local *net.TCPConn, id int) {
	defer local.Close()
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(f.port))
	h.Set("requestID", strconv.Itoa(id))
	errStream, err := f.s.createStream(h)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error requestid=%d: %v\n", id, err)
		return
	}
	defer f.s.forget(errStream)
	_ = errStream.Close() // FIN: this side never writes the error stream; a failure shows below

	errText := make(chan string, 1)
	go func() {
		text, err := readErrorStream(errStream)
		if err != nil {
			text = fmt.Sprintf("reading the error stream: %v", err)
		}
		errText <- text
	}()

	h.Set("streamType", "data")
	data, err := f.s.createStream(h)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error requestid=%d: %v\n", id, err)
		return
	}
	defer f.s.forget(data)
	remoteDone := f.copyBoth(local, data, id)

	var text string
	select {
	case <-remoteDone:
		text = <-errText
	case text = <-errText:
	}
	if text != "" {
		fmt.Fprintf(os.Stderr, "error requestid=%d: %s\n", id, text)
		_ = data.Reset() // the pair failed: drop what is in flight; local is closed by defer
		if f.closeOnError {
			f.s.close() // kubectl ≥ 1.25 ends the whole session on an error
		}
		return
	}
	// Let the local peer finish reading what we wrote, then close (deferred).
	<-remoteDone
}

// copyBoth runs both copies; the channel is closed once the server's side has ended and its
// end has been passed on to the local peer as a FIN.
func (f *forwarder) copyBoth(local *net.TCPConn, data *spdystream.Stream, id int) <-chan struct{} {
	remoteDone := make(chan struct{})
	go func() {
		defer close(remoteDone)
		if _, err := io.Copy(local, data); err != nil && !isClosedErr(err) {
			fmt.Fprintf(os.Stderr, "requestid=%d: copy to the local connection: %v\n", id, err)
		}
		_ = local.CloseWrite() // the peer may already be gone; nothing to do then
	}()
	go func() {
		if _, err := io.Copy(data, local); err != nil && !isClosedErr(err) {
			fmt.Fprintf(os.Stderr, "requestid=%d: copy to the data stream: %v\n", id, err)
		}
		// Half-close: the server sees the end of the local request and may still answer.
		_ = data.Close() // fails only when the stream was reset or the session is gone
	}()
	return remoteDone
}

// isClosedErr is the end of a copy because this side closed the socket, not a failure.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
