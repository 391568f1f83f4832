package main

// A self-check of ukstream against a throwaway streaming server built on spdystream's server
// side, which behaves as kubelet's streaming server does (pairs by requestid, dials the port,
// error text on the error stream; attach streams, a v4 Status at the end). It checks the
// client, not unikd: `make stream-client-check`.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/spdystream"
)

const deadline = 20 * time.Second

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ukstream-selfcheck-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "ukstream")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	rc := m.Run()
	os.RemoveAll(dir)
	os.Exit(rc)
}

// --- the fake kubelet-side server ---

func negotiate(offered []string, supported ...string) string {
	for _, o := range offered {
		for _, s := range supported {
			if o == s {
				return o
			}
		}
	}
	return ""
}

type fakeServer struct {
	t  *testing.T
	ln net.Listener
}

func startServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{t: t, ln: ln}
	srv := &http.Server{Handler: http.HandlerFunc(fs.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fs
}

func (fs *fakeServer) url(path string) string { return "http://" + fs.ln.Addr().String() + path }

func (fs *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	var supported []string
	switch {
	case strings.HasPrefix(r.URL.Path, "/portforward/"):
		supported = []string{"portforward.k8s.io"}
	case strings.HasPrefix(r.URL.Path, "/attach/"):
		supported = []string{protocolV4, protocolV3, protocolV2, protocolV1}
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost || !strings.EqualFold(r.Header.Get("Upgrade"), "SPDY/3.1") {
		http.Error(w, "not an SPDY upgrade", http.StatusBadRequest)
		return
	}
	proto := negotiate(r.Header.Values(headerProtocolVersion), supported...)
	if proto == "" {
		w.Header().Set(headerAcceptedVersions, strings.Join(supported, ","))
		http.Error(w, "no common protocol", http.StatusForbidden)
		return
	}
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", "SPDY/3.1")
	w.Header().Set(headerProtocolVersion, proto)
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		fs.t.Errorf("hijack: %v", err)
		return
	}
	sc, err := spdystream.NewConnection(conn, true)
	if err != nil {
		fs.t.Errorf("server spdystream: %v", err)
		conn.Close()
		return
	}
	q := r.URL.Query()
	if supported[0] == "portforward.k8s.io" {
		pf := &pfServer{pairs: map[string]*pfPair{}}
		go sc.Serve(pf.onStream)
		return
	}
	at := &attachServer{conn: conn, sc: sc, proto: proto, q: q, ready: make(chan struct{}),
		streams: map[string]*spdystream.Stream{}}
	go sc.Serve(at.onStream)
	go at.run()
}

type pfPair struct{ errS, data *spdystream.Stream }

type pfServer struct {
	mu    sync.Mutex
	pairs map[string]*pfPair
}

func (p *pfServer) onStream(st *spdystream.Stream) {
	_ = st.SendReply(http.Header{}, false)
	h := st.Headers()
	id := h.Get("requestid")
	p.mu.Lock()
	pair := p.pairs[id]
	if pair == nil {
		pair = &pfPair{}
		p.pairs[id] = pair
	}
	switch h.Get("streamtype") {
	case "error":
		pair.errS = st
	case "data":
		pair.data = st
	}
	complete := pair.errS != nil && pair.data != nil
	if complete {
		delete(p.pairs, id)
	}
	p.mu.Unlock()
	if complete {
		go forwardPair(pair, h.Get("port"))
	}
}

func forwardPair(p *pfPair, port string) {
	defer p.errS.Close()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Fprintf(p.errS, "error forwarding port %s: %v", port, err)
		p.data.Close()
		return
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(tc, p.data)
		tc.CloseWrite()
		close(done)
	}()
	io.Copy(p.data, tc)
	p.data.Close()
	<-done
}

// attachServer: "hello" on stdout, stdin echoed back as "echo: LINE", and at stdin's end (or
// at once without stdin) the status that ?fail= asks for. ?flood=N writes N lines at once and
// resets the connection when a write blocks for 2 s, as a server drops a slow client.
type attachServer struct {
	conn    net.Conn
	sc      *spdystream.Connection
	proto   string
	q       map[string][]string
	mu      sync.Mutex
	streams map[string]*spdystream.Stream
	ready   chan struct{}
}

func (a *attachServer) expected() int {
	n := 2 // error, stdout
	if a.q["stdin"] != nil {
		n++
	}
	return n
}

func (a *attachServer) onStream(st *spdystream.Stream) {
	_ = st.SendReply(http.Header{}, false)
	a.mu.Lock()
	a.streams[st.Headers().Get("streamtype")] = st
	if len(a.streams) == a.expected() {
		close(a.ready)
	}
	a.mu.Unlock()
}

func (a *attachServer) run() {
	<-a.ready
	errS, out, in := a.streams["error"], a.streams["stdout"], a.streams["stdin"]
	if n := a.q["flood"]; n != nil {
		a.flood(out, n[0])
		return
	}
	fmt.Fprintf(out, "hello via %s\n", a.proto)
	if in != nil {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			fmt.Fprintf(out, "echo: %s\n", sc.Text())
		}
	}
	if f := a.q["fail"]; f != nil {
		fmt.Fprintf(errS, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q}`, f[0])
	} else {
		fmt.Fprint(errS, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}`)
	}
	out.Close()
	errS.Close()
}

func (a *attachServer) flood(out *spdystream.Stream, count string) {
	n, _ := strconv.Atoi(count)
	line := strings.Repeat("x", 1000) + "\n"
	for i := 0; i < n; i++ {
		a.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := out.Write([]byte(line)); err != nil {
			a.conn.(*net.TCPConn).SetLinger(0) // RST: the peer's window is shut
			a.conn.Close()
			return
		}
	}
}

// --- helpers ---

// lineServer answers each line "X" with "reply X" until EOF, then closes.
func lineServer(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "reply %s\n", sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

type proc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	lines    chan string
	errLines chan string
	mu       sync.Mutex
	stderr   strings.Builder
	exited   chan error
}

func startClient(t *testing.T, args ...string) *proc {
	cmd := exec.Command(binPath, args...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	p := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 1000),
		errLines: make(chan string, 1000), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errDone := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.errLines <- sc.Text()
		}
		close(errDone)
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		<-errDone // Wait closes the pipes: read them to their end first
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range p.lines {
		}
	})
	return p
}

func (p *proc) errText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// errLine waits for a stderr line that contains want.
func (p *proc) errLine(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case l := <-p.errLines:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no stderr line with %q within %v; stderr: %s", want, deadline, p.errText())
		}
	}
}

func (p *proc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("client ended; stderr: %s", p.errText())
		}
		return l
	case <-time.After(deadline):
		t.Fatalf("no line within %v; stderr: %s", deadline, p.errText())
	}
	return ""
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	for range p.lines {
	}
	select {
	case err := <-p.exited:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(deadline):
		t.Fatalf("client did not exit; stderr: %s", p.errText())
	}
	return -1
}

func startForward(t *testing.T, fs *fakeServer, port int, extra ...string) (*proc, string) {
	args := append([]string{"portforward", fs.url("/portforward/tok"), "--port", strconv.Itoa(port)}, extra...)
	p := startClient(t, args...)
	l := p.line(t)
	if !strings.HasPrefix(l, "listening 127.0.0.1:") {
		t.Fatalf("first line %q", l)
	}
	return p, strings.TrimPrefix(l, "listening ")
}

func exchange(t *testing.T, addr string, words ...string) {
	c, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	r := bufio.NewReader(c)
	for _, w := range words {
		fmt.Fprintf(c, "%s\n", w)
		got, err := r.ReadString('\n')
		if err != nil || got != "reply "+w+"\n" {
			t.Errorf("%s: got %q, %v", w, got, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Errorf("after half-close: %q, %v (want a clean EOF)", rest, err)
	}
}

// --- the checks ---

func TestPortForwardTwoRequestsOneConnection(t *testing.T) {
	fs := startServer(t)
	_, addr := startForward(t, fs, lineServer(t))
	exchange(t, addr, "first", "second")
}

func TestPortForwardThreeConnectionsAtOnce(t *testing.T) {
	fs := startServer(t)
	_, addr := startForward(t, fs, lineServer(t))
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			exchange(t, addr, fmt.Sprintf("c%d-a", i), fmt.Sprintf("c%d-b", i))
		}(i)
	}
	wg.Wait()
}

func TestPortForwardErrorText(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	fs := startServer(t)
	p, addr := startForward(t, fs, dead)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(deadline))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("local side: %q, %v (want a clean EOF)", b, err)
	}
	c.Close()
	l := p.errLine(t, "error requestid=0: ")
	want := fmt.Sprintf("error requestid=0: error forwarding port %d: dial tcp 127.0.0.1:%d: connect: connection refused", dead, dead)
	if l != want {
		t.Errorf("stderr line %q, want %q", l, want)
	}
	// The session survives a failed pair: the next connection (requestid 1) fails the same way.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(deadline))
	io.ReadAll(c2)
	c2.Close()
	p.errLine(t, "error requestid=1: ")
}

func TestAttachStdinEchoAndSuccess(t *testing.T) {
	fs := startServer(t)
	p := startClient(t, "attach", fs.url("/attach/tok?stdin=1"), "--stdin")
	if l := p.line(t); l != "hello via v4.channel.k8s.io" {
		t.Fatalf("first line %q", l)
	}
	fmt.Fprintln(p.stdin, "ping one")
	if l := p.line(t); l != "echo: ping one" {
		t.Fatalf("echo %q", l)
	}
	fmt.Fprintln(p.stdin, "ping two")
	if l := p.line(t); l != "echo: ping two" {
		t.Fatalf("echo %q", l)
	}
	p.stdin.Close()
	if rc := p.wait(t); rc != 0 || !strings.Contains(p.errText(), "status: Success") {
		t.Fatalf("rc %d, stderr %q", rc, p.errText())
	}
}

func TestAttachFailureStatus(t *testing.T) {
	fs := startServer(t)
	p := startClient(t, "attach", fs.url("/attach/tok?fail=guest+is+gone"))
	p.line(t)
	if rc := p.wait(t); rc != 1 || !strings.Contains(p.errText(), "status: Failure: guest is gone") {
		t.Fatalf("rc %d, stderr %q", rc, p.errText())
	}
}

func TestAttachOlderProtocolPlainText(t *testing.T) {
	fs := startServer(t)
	p := startClient(t, "attach", fs.url("/attach/tok"), "--protocol", "v2.channel.k8s.io")
	if l := p.line(t); l != "hello via v2.channel.k8s.io" {
		t.Fatalf("first line %q", l)
	}
	// The fake server always writes v4 JSON; a v2 client takes any text as a failure.
	if rc := p.wait(t); rc != 1 || !strings.Contains(p.errText(), `status: Failure: {"kind":"Status"`) {
		t.Fatalf("rc %d, stderr %q", rc, p.errText())
	}
}

func TestAttachSlowClientIsDropped(t *testing.T) {
	fs := startServer(t)
	p := startClient(t, "attach", fs.url("/attach/tok?flood=100000"), "--stop-reading-after-bytes", "3000")
	if rc := p.wait(t); rc != exitPeerClosed {
		t.Fatalf("rc %d, stderr %q", rc, p.errText())
	}
	if !strings.Contains(p.errText(), "stopped reading after ") {
		t.Errorf("stderr %q", p.errText())
	}
}

func TestRawRefusals(t *testing.T) {
	fs := startServer(t)
	out, err := exec.Command(binPath, "raw", fs.url("/attach/tok"), "--protocol", "v9.channel.k8s.io").Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitNotUpgrade {
		t.Fatalf("raw 403: %v %s", err, out)
	}
	if !strings.HasPrefix(string(out), "HTTP/1.1 403 Forbidden\n") ||
		!strings.Contains(string(out), "\nX-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io,") {
		t.Errorf("raw 403 output %q", out)
	}
	out, err = exec.Command(binPath, "raw", fs.url("/nothing"), "--protocol", "v4.channel.k8s.io").Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitNotUpgrade || !strings.HasPrefix(string(out), "HTTP/1.1 404 ") {
		t.Fatalf("raw 404: %v %q", err, out)
	}
	out, err = exec.Command(binPath, "raw", fs.url("/portforward/x"), "--protocol", "portforward.k8s.io").Output()
	if err != nil || !strings.Contains(string(out), "101 Switching Protocols") ||
		!strings.Contains(string(out), "X-Stream-Protocol-Version: portforward.k8s.io") {
		t.Fatalf("raw 101: %v %q", err, out)
	}
	// A refused upgrade in attach mode: one line, exit 1.
	cmd := exec.Command(binPath, "attach", fs.url("/nothing"))
	eout, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailure ||
		!strings.HasPrefix(string(eout), "ukstream: attach: unable to upgrade connection: 404 Not Found") {
		t.Fatalf("attach 404: %v %q", err, eout)
	}
}
