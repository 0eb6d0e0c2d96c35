package vminit

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// network brings lo up, and eth0 up with kiln.ip and a default route via
// kiln.gw, over rtnetlink.
func network(args map[string]string) error {
	nl, err := newNetlink()
	if err != nil {
		return err
	}
	defer nl.close()
	if err := nl.linkUp("lo"); err != nil {
		return err
	}
	if err := resolvConf(args); err != nil {
		return err
	}
	ip := args[ArgIP]
	if ip == "" {
		return nil
	}
	prefix, err := netip.ParsePrefix(ip)
	if err != nil || !prefix.Addr().Is4() {
		return fmt.Errorf("%s=%q is not an IPv4 address with a prefix length, like 10.0.2.15/24", ArgIP, ip)
	}
	// The network driver probes its device when its module loads; give
	// the device a moment to show up all the same.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat("/sys/class/net/eth0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no eth0 after 5s: is there a virtio-net device, and does the image load virtio_net?")
		}
		time.Sleep(5 * time.Millisecond)
	}
	eth, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	if err := nl.addAddr(eth.Index, prefix); err != nil {
		return fmt.Errorf("eth0 address %s: %w", prefix, err)
	}
	if err := nl.linkUp("eth0"); err != nil {
		return err
	}
	if gw := args[ArgGW]; gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil || !a.Is4() {
			return fmt.Errorf("%s=%q is not an IPv4 address", ArgGW, gw)
		}
		if err := nl.addDefaultRoute(eth.Index, a); err != nil {
			return fmt.Errorf("default route via %s: %w", a, err)
		}
	}
	return nil
}

type netlink struct {
	fd  int
	seq uint32
}

func newNetlink() (*netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlink{fd: fd}, nil
}

func (n *netlink) close() { unix.Close(n.fd) }

// request sends one message (header added here) and waits for its ack.
func (n *netlink) request(typ uint16, flags uint16, body []byte) error {
	n.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], n.seq)
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		m, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err != nil {
			return err
		}
		for b := buf[:m]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("netlink: bad message length %d", l)
			}
			if ne.Uint16(b[4:]) == unix.NLMSG_ERROR && ne.Uint32(b[8:]) == n.seq {
				if code := int32(ne.Uint32(b[16:])); code != 0 {
					return unix.Errno(-code)
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
}

// attr encodes one rtnetlink attribute.
func attr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}

func (n *netlink) linkUp(name string) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(ifc.Index))
	binary.NativeEndian.PutUint32(b[8:], unix.IFF_UP)  // flags
	binary.NativeEndian.PutUint32(b[12:], unix.IFF_UP) // change
	if err := n.request(unix.RTM_NEWLINK, 0, b); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

func (n *netlink) addAddr(index int, p netip.Prefix) error {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = unix.AF_INET
	b[1] = byte(p.Bits())
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	a := p.Addr().As4()
	b = append(b, attr(unix.IFA_LOCAL, a[:])...)
	b = append(b, attr(unix.IFA_ADDRESS, a[:])...)
	return n.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}

func (n *netlink) addDefaultRoute(index int, gw netip.Addr) error {
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = unix.AF_INET
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	g := gw.As4()
	b = append(b, attr(unix.RTA_GATEWAY, g[:])...)
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(index))
	b = append(b, attr(unix.RTA_OIF, oif)...)
	return n.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b)
}

// resolvConf writes /etc/resolv.conf from kiln.dns and kiln.search, when
// the command line gives a name server.
func resolvConf(args map[string]string) error {
	text, err := resolvConfText(args)
	if text == "" || err != nil {
		return err
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return err
	}
	return os.WriteFile("/etc/resolv.conf", []byte(text), 0o644)
}

// resolvConfText is /etc/resolv.conf for kiln.dns and kiln.search; empty
// without kiln.dns.
func resolvConfText(args map[string]string) (string, error) {
	if args[ArgDNS] == "" {
		return "", nil
	}
	var b strings.Builder
	for _, ns := range strings.Split(args[ArgDNS], ",") {
		if _, err := netip.ParseAddr(ns); err != nil {
			return "", fmt.Errorf("%s=%q: %q is not an IP address", ArgDNS, args[ArgDNS], ns)
		}
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if s := args[ArgSearch]; s != "" {
		fmt.Fprintf(&b, "search %s\n", strings.ReplaceAll(s, ",", " "))
	}
	// Cluster names like kv-shard-0.kv-shard have one dot: try the search
	// domains first, as a pod's resolv.conf does. A lost query is asked
	// again after a second, as in the pods kiln renders (deployer/kubernetes).
	b.WriteString("options ndots:5 timeout:1 attempts:3\n")
	return b.String(), nil
}
