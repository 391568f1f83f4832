package main

// `ukstream attach`: kubectl attach's client side (client-go tools/remotecommand, protocols
// v1 to v4). Streams are created in client-go's order, each waiting for its reply: error,
// stdin, stdout, stderr, resize. The error stream is read to its end; under v4 it holds a
// metav1.Status as JSON, under older versions plain text.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/moby/spdystream"
)

const (
	protocolV4 = "v4.channel.k8s.io"
	protocolV3 = "v3.channel.k8s.io"
	protocolV2 = "v2.channel.k8s.io"
	protocolV1 = "channel.k8s.io"
)

// kubectl's SPDY list, most preferred first; the server picks the first it knows.
var defaultAttachProtocols = []string{protocolV4, protocolV3, protocolV2, protocolV1}

type attachOptions struct {
	url       string
	protocols []string
	stdin     bool
	stderr    bool
	tty       bool
	stopAfter int64 // < 0: never stop reading
}

// The parts of metav1.Status that client-go's v4 decoder reads.
type metaStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details *struct {
		Causes []struct {
			Type    string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// decodeStatus turns the error stream's text into the final line and the exit code.
func decodeStatus(protocol, text string) (string, int) {
	if text == "" {
		return "status: none (the error stream ended empty)", 0
	}
	if protocol != protocolV4 {
		return "status: Failure: " + text, 1
	}
	var st metaStatus
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		return fmt.Sprintf("status: protocol error: %v in %q", err, text), 1
	}
	switch st.Status {
	case "Success":
		return "status: Success", 0
	case "Failure":
		if st.Reason != "NonZeroExitCode" {
			return "status: Failure: " + st.Message, 1
		}
		if st.Details != nil {
			for _, c := range st.Details.Causes {
				if c.Type != "ExitCode" {
					continue
				}
				rc, err := strconv.ParseUint(c.Message, 10, 8)
				if err != nil {
					return fmt.Sprintf("status: protocol error: invalid exit code %q", c.Message), 1
				}
				return fmt.Sprintf("status: Failure: command terminated with exit code %d", rc), 1
			}
		}
		return "status: protocol error: NonZeroExitCode without an ExitCode cause", 1
	default:
		return fmt.Sprintf("status: protocol error: unknown status %q", st.Status), 1
	}
}

type attachStreams struct {
	errStream, stdin, stdout, stderr, resize *spdystream.Stream
}

func openAttachStreams(s *session, o *attachOptions) (*attachStreams, error) {
	var a attachStreams
	var err error
	h := http.Header{}
	open := func(kind string) (*spdystream.Stream, error) {
		h.Set("streamType", kind)
		return s.createStream(h)
	}
	if a.errStream, err = open("error"); err != nil {
		return nil, err
	}
	if o.stdin {
		if a.stdin, err = open("stdin"); err != nil {
			return nil, err
		}
	}
	if a.stdout, err = open("stdout"); err != nil {
		return nil, err
	}
	if o.stderr && !o.tty {
		if a.stderr, err = open("stderr"); err != nil {
			return nil, err
		}
	}
	// Resize streams exist from v3 on.
	if o.tty && (s.protocol == protocolV3 || s.protocol == protocolV4) {
		if a.resize, err = open("resize"); err != nil {
			return nil, err
		}
	}
	return &a, nil
}

func checkAttachProtocol(s *session, offered []string) error {
	if s.protocol == "" {
		s.protocol = protocolV1 // client-go's fallback when the server names none
		return nil
	}
	for _, p := range offered {
		if p == s.protocol {
			return nil
		}
	}
	return fmt.Errorf("unable to negotiate protocol: client offered %v, server returned %q", offered, s.protocol)
}

func runAttach(o *attachOptions) int {
	s, err := openSession(o.url, o.protocols)
	if err != nil {
		return fail("attach: %v", err)
	}
	defer s.close()
	if err := checkAttachProtocol(s, o.protocols); err != nil {
		return fail("attach: %v", err)
	}
	a, err := openAttachStreams(s, o)
	if err != nil {
		return fail("attach: %v", err)
	}
	errText := make(chan string, 1)
	go func() {
		text, err := readErrorStream(a.errStream)
		if err != nil {
			text = fmt.Sprintf(`{"status":"Failure","message":"reading the error stream: %v"}`, err)
		}
		errText <- text
	}()
	if a.resize != nil {
		// One size, as kubectl sends the terminal's at start; a pipe has none, so 80x24.
		_ = json.NewEncoder(a.resize).Encode(map[string]uint16{"Width": 80, "Height": 24})
	}
	if a.stdin != nil {
		copyStdin(a.stdin)
	}
	var wg sync.WaitGroup
	stopped := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyStdout(a.stdout, o.stopAfter, stopped)
	}()
	if a.stderr != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(os.Stderr, a.stderr) // ends with the stream or the session
		}()
	}
	outputDone := make(chan struct{})
	go func() { wg.Wait(); close(outputDone) }()

	sig := notifySignals()
	select {
	case <-sig:
		return fail("attach: interrupted by a signal")
	case <-stopped:
		return holdStopped(s, sig)
	case <-outputDone:
	}
	select {
	case <-sig:
		return fail("attach: interrupted by a signal while waiting for the status")
	case text := <-errText:
		line, rc := decodeStatus(s.protocol, text)
		fmt.Fprintln(os.Stderr, line)
		return rc
	}
}

// copyStdin sends our stdin and half-closes the stream at its end, or when the server closes
// its side first (client-go's two goroutines with a sync.Once).
func copyStdin(st *spdystream.Stream) {
	var once sync.Once
	closeOnce := func() { once.Do(func() { _ = st.Close() }) } // FIN; fails only on a dead session
	go func() {
		defer closeOnce()
		_, _ = io.Copy(st, os.Stdin) // a write error means the session ended; stdout shows it
	}()
	go func() {
		defer closeOnce()
		_, _ = io.Copy(io.Discard, st) // nothing comes; this waits for the server's FIN
	}()
}

// copyStdout writes every frame as it comes, unbuffered. With stopAfter >= 0 it stops reading
// once that many bytes were written and closes stopped, leaving the rest in the socket.
func copyStdout(st *spdystream.Stream, stopAfter int64, stopped chan<- struct{}) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		if stopAfter >= 0 && total >= stopAfter {
			fmt.Fprintf(os.Stderr, "stopped reading after %d bytes\n", total)
			close(stopped)
			select {} // never read again; main decides when to exit
		}
		n, err := st.Read(buf)
		if n > 0 {
			if _, werr := os.Stdout.Write(buf[:n]); werr != nil {
				fmt.Fprintf(os.Stderr, "attach: write stdout: %v\n", werr)
				return
			}
			total += int64(n)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "attach: read stdout stream: %v\n", err)
			}
			return
		}
	}
}

// holdStopped keeps the connection open without reading until a signal, or until the server
// ends the TCP connection, which is what a test of a slow client waits for.
func holdStopped(s *session, sig <-chan os.Signal) int {
	hup := watchPeerClose(s.raw.tcpConn())
	select {
	case <-sig:
		return 0
	case err := <-hup:
		if err != nil {
			return fail("attach: watching the socket: %v", err)
		}
		return failCode(exitPeerClosed, "attach: the server closed the connection while this client was not reading")
	}
}
