// ukstream is the test client for unikd's CRI streaming server. It speaks to a streaming URL
// as kubelet's and kubectl's client side do (client-go's SPDY round tripper, tools/portforward
// and tools/remotecommand), with the spdystream 0.2.0 that crictl vendors, so the server's
// framing is checked by the real library. See tests/stream/README.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes, documented in tests/stream/README.md.
const (
	exitOK         = 0
	exitFailure    = 1 // a failure status, a refused upgrade, a network or protocol error
	exitUsage      = 2
	exitNotUpgrade = 3 // raw: the server answered, but not with 101
	exitPeerClosed = 4 // attach --stop-reading-after-bytes: the server closed the connection
)

const usage = `usage:
  ukstream portforward URL [--listen 127.0.0.1:0] [--port 80] [--close-on-error]
  ukstream attach URL [--stdin] [--stderr] [--tty] [--stop-reading-after-bytes N] [--rcvbuf BYTES]
                      [--protocol v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io]
  ukstream raw URL [--protocol P[,P...]] [--upgrade SPDY/3.1] [--method POST] [--header 'Name: value']...
`

func fail(format string, args ...interface{}) int {
	return failCode(exitFailure, format, args...)
}

func failCode(code int, format string, args ...interface{}) int {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "ukstream: "+strings.ReplaceAll(msg, "\n", " "))
	return code
}

func notifySignals() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	return ch
}

// parseArgs accepts flags before and after the positional URL, which the flag package alone
// does not (it stops at the first non-flag).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type headerFlags http.Header

func (h headerFlags) String() string { return "" }
func (h headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("--header %q: want 'Name: value'", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are printed once, by main
	return fs
}

func oneURL(name string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("%s: want exactly one URL, got %d arguments", name, len(pos))
	}
	return pos[0], nil
}

func cmdPortForward(args []string) int {
	fs := newFlagSet("portforward")
	listen := fs.String("listen", "127.0.0.1:0", "local address to listen on")
	port := fs.Int("port", 80, "the pod's port")
	closeOnError := fs.Bool("close-on-error", false, "end the session after an error, as kubectl ≥ 1.25 does")
	pos, err := parseArgs(fs, args)
	if err == nil {
		if *port < 1 || *port > 65535 {
			err = fmt.Errorf("--port %d: want 1 to 65535", *port)
		}
	}
	var u string
	if err == nil {
		u, err = oneURL("portforward", pos)
	}
	if err != nil {
		return failCode(exitUsage, "%v", err)
	}
	return runPortForward(u, *listen, *port, *closeOnError)
}

func cmdAttach(args []string) int {
	fs := newFlagSet("attach")
	o := attachOptions{}
	protos := fs.String("protocol", strings.Join(defaultAttachProtocols, ","), "protocols to offer, preferred first")
	fs.BoolVar(&o.stdin, "stdin", false, "open a stdin stream and copy our stdin to it")
	fs.BoolVar(&o.stderr, "stderr", false, "open a stderr stream (not with --tty)")
	fs.BoolVar(&o.tty, "tty", false, "open a resize stream (v3, v4) and no stderr")
	fs.Int64Var(&o.stopAfter, "stop-reading-after-bytes", -1, "stop reading stdout after N bytes")
	fs.IntVar(&recvBuffer, "rcvbuf", 0, "the socket's receive buffer in bytes (0: the kernel's)")
	pos, err := parseArgs(fs, args)
	if err == nil {
		o.url, err = oneURL("attach", pos)
	}
	if err == nil {
		if o.protocols = splitList(*protos); len(o.protocols) == 0 {
			err = fmt.Errorf("--protocol: empty list")
		}
	}
	if err != nil {
		return failCode(exitUsage, "%v", err)
	}
	return runAttach(&o)
}

func cmdRaw(args []string) int {
	fs := newFlagSet("raw")
	protos := fs.String("protocol", "", "X-Stream-Protocol-Version values, comma-separated (none if empty)")
	upgrade := fs.String("upgrade", upgradeSPDY31, "the Upgrade header (empty: no Upgrade and no Connection)")
	method := fs.String("method", http.MethodPost, "the request method")
	extra := headerFlags(http.Header{})
	fs.Var(extra, "header", "an extra request header 'Name: value' (repeatable)")
	pos, err := parseArgs(fs, args)
	var u string
	if err == nil {
		u, err = oneURL("raw", pos)
	}
	if err != nil {
		return failCode(exitUsage, "%v", err)
	}
	raw, resp, err := dialUpgrade(upgradeRequest{url: u, method: *method, upgrade: *upgrade,
		protocols: splitList(*protos), extra: http.Header(extra)})
	if err != nil {
		return fail("raw: %v", err)
	}
	defer raw.Close()
	fmt.Printf("%s %s\n", resp.Proto, resp.Status)
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range resp.Header[k] {
			fmt.Printf("%s: %s\n", k, v)
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return exitOK
	}
	// The body after a blank line, as HTTP shows it; a 101 has none to read.
	fmt.Printf("\n%s\n", readErrorBody(resp))
	return exitNotUpgrade
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(exitUsage)
	}
	var rc int
	switch os.Args[1] {
	case "portforward":
		rc = cmdPortForward(os.Args[2:])
	case "attach":
		rc = cmdAttach(os.Args[2:])
	case "raw":
		rc = cmdRaw(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
	default:
		fmt.Fprintf(os.Stderr, "ukstream: unknown command %q\n%s", os.Args[1], usage)
		rc = exitUsage
	}
	os.Exit(rc)
}
