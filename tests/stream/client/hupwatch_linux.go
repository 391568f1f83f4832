package main

// Seeing the server end a connection that this client has stopped reading. The bytes in the
// socket must stay unread, so this waits in ppoll for POLLRDHUP (a FIN that fits the window)
// or POLLHUP/POLLERR (a reset), never for POLLIN. The standard library has no poll wrapper.

import (
	"errors"
	"net"
	"syscall"
	"unsafe"
)

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollNVAL  = 0x20
	pollRDHUP = 0x2000
)

// watchPeerClose sends nil once the peer has closed or reset c, or the error that stopped
// the watch. It never returns while the connection stays up.
func watchPeerClose(c *net.TCPConn) <-chan error {
	ch := make(chan error, 1)
	if c == nil {
		ch <- errors.New("not a TCP connection")
		return ch
	}
	go func() {
		rc, err := c.SyscallConn()
		if err != nil {
			ch <- err
			return
		}
		var perr error
		cerr := rc.Control(func(fd uintptr) {
			pfd := pollFd{fd: int32(fd), events: pollRDHUP}
			for {
				_, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, 0, 0, 0, 0)
				if e == syscall.EINTR {
					continue // the Go runtime's preemption signals
				}
				if e != 0 {
					perr = e
				} else if pfd.revents&pollNVAL != 0 {
					perr = errors.New("ppoll: the socket is no longer open")
				} else if pfd.revents&(pollRDHUP|pollHUP|pollERR) == 0 {
					continue
				}
				return
			}
		})
		if cerr != nil {
			perr = cerr
		}
		ch <- perr
	}()
	return ch
}
