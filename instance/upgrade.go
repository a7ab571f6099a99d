package instance

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/cloudflare/tableflip"
)

// Upgrader performs zero-downtime binary upgrades with
// github.com/cloudflare/tableflip: on SIGUSR2 the running process starts a
// new copy of its binary, which inherits every listening socket (HTTP,
// HTTPS, DNS UDP and TCP, admin). The new process serves once its first
// probe round is in and then tells the old one, which stops accepting,
// finishes its in-flight requests and exits. Connections and datagrams that
// arrive meanwhile wait in the shared sockets, so none is refused.
//
// A process has at most one Upgrader (tableflip's rule). Without one, an
// Instance binds its sockets itself and ignores SIGUSR2, as in tests that
// run instances in-process.
type Upgrader struct {
	upg *tableflip.Upgrader
}

// NewUpgrader takes over the sockets the parent process passed, if this
// process was started by an upgrade. pidFile, if set, receives the PID of
// the process that serves, written when it is ready (systemd's PIDFile=).
func NewUpgrader(pidFile string) (*Upgrader, error) {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile})
	if err != nil {
		return nil, fmt.Errorf("upgrades: %w", err)
	}
	return &Upgrader{upg: upg}, nil
}

// Stop ends the upgrader at shutdown: no upgrade starts any more.
func (u *Upgrader) Stop() { u.upg.Stop() }

// upgrading reports whether this process was started by an upgrade, that
// is whether an older process still serves on the inherited sockets.
func (u *Upgrader) upgrading() bool { return u.upg.HasParent() }

// ready tells tableflip (and the parent, which then exits) that this
// process serves, and writes the PID file.
func (u *Upgrader) ready() error { return u.upg.Ready() }

// upgrade starts the new process and waits until it is ready or failed.
func (u *Upgrader) upgrade() error { return u.upg.Upgrade() }

// exit is closed once a new process is ready: this one must stop.
func (u *Upgrader) exit() <-chan struct{} { return u.upg.Exit() }

// sockets opens listening sockets: the net package's without an
// Upgrader, the inherited ones (or new ones then passed on) with one. Each
// socket is named by its front door, so that two front doors asking for
// the same address (port 0) get their own.
type sockets interface {
	listen(door, addr string) (net.Listener, error)
	listenPacket(door string, lc *net.ListenConfig, addr string, index int) (net.PacketConn, error)
}

type netSockets struct{}

func (netSockets) listen(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (netSockets) listenPacket(_ string, lc *net.ListenConfig, addr string, _ int) (net.PacketConn, error) {
	return lc.ListenPacket(context.Background(), "udp", addr)
}

type upgradeSockets struct{ u *Upgrader }

// The name tableflip keys a socket by is its front door and its address as
// configured: the new process asks with the same configuration (or, after a
// change of listen addresses, which is a restart-only key, binds anew).
func (s upgradeSockets) listen(door, addr string) (net.Listener, error) {
	var bindErr error
	ln, err := s.u.upg.ListenWithCallback("tcp", door+"@"+addr, func(network, _ string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		bindErr = err
		return ln, err
	})
	return ln, keepBindError(err, bindErr)
}

func (s upgradeSockets) listenPacket(door string, lc *net.ListenConfig, addr string, index int) (net.PacketConn, error) {
	var bindErr error
	pc, err := s.u.upg.ListenPacketWithCallback("udp", door+"@"+addr+"#"+strconv.Itoa(index), func(network, _ string) (net.PacketConn, error) {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		bindErr = err
		return pc, err
	})
	return pc, keepBindError(err, bindErr)
}

// keepBindError returns the bind's own error when tableflip's wraps it:
// tableflip formats it with %s, which loses the syscall error that callers
// branch on (EACCES names CAP_NET_BIND_SERVICE, EADDRINUSE the busy port).
func keepBindError(err, bindErr error) error {
	if err != nil && bindErr != nil {
		return bindErr
	}
	return err
}

// dnsSockets adapts sockets to what dnsserver asks for.
type dnsSockets struct{ s sockets }

func (d dnsSockets) ListenPacket(lc *net.ListenConfig, addr string, index int) (net.PacketConn, error) {
	return d.s.listenPacket("dns", lc, addr, index)
}

func (d dnsSockets) Listen(addr string) (net.Listener, error) { return d.s.listen("dns", addr) }
