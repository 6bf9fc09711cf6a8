package importer

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Ipvsadm converts the rules `ipvsadm-save -n` (ipvsadm -S -n) prints:
//
//	-A -t 10.0.0.1:80 -s wlc -p 300
//	-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1
//
// Long options (--add-service, --tcp-service, ...) are read too, so a
// hand-written restore file works. ipvsadm knows no health checks: the
// services come out unchecked.
func Ipvsadm(name string, data []byte, opt Options) (*Result, error) {
	c := &converter{opt: opt, res: &Result{Source: name, Kind: "ipvsadm"}}
	byKey := map[string]*Service{}
	nat := map[*Service]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		pos := Pos{name, i + 1}
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "ipvsadm" || strings.HasSuffix(f[0], "/ipvsadm")) {
			f = f[1:] // a script of ipvsadm commands
		}
		if len(f) == 0 {
			continue
		}
		r := c.ipvsLine(pos, f)
		switch r.cmd {
		case "":
		case "add-service", "edit-service":
			if r.svc == "" {
				continue
			}
			s := byKey[r.svc]
			if s == nil {
				if r.cmd == "edit-service" {
					c.warn(pos, "%s: edits a service not added before; skipped", r.svc)
					continue
				}
				s = &Service{Pos: pos, VIP: r.addr.Addr().Unmap(), Port: int(r.addr.Port()), Protocol: r.proto, ipvsSched: "wlc", schedPos: pos}
				byKey[r.svc] = s
				c.res.Services = append(c.res.Services, s)
				nat[s] = true
			}
			if r.sched != "" {
				s.ipvsSched, s.schedPos = r.sched, pos
			}
			if r.flags != nil {
				s.flags = r.flags
			}
			if r.persist > 0 {
				s.Persistence = r.persist
			}
		case "add-server", "edit-server":
			s := byKey[r.svc]
			if s == nil {
				if r.svc != "" {
					c.warn(pos, "real server for %s, which is not an imported service; skipped", r.svc)
				}
				continue
			}
			if !r.server.IsValid() {
				c.warn(pos, "no -r ADDRESS[:PORT]; skipped")
				continue
			}
			if r.method != "" && r.method != "m" {
				nat[s] = false
			}
			b := &Backend{Pos: pos, Addr: r.server.Addr().Unmap(), Port: int(r.server.Port()), Weight: r.weight, MaxConnections: r.uthresh}
			if r.cmd == "edit-server" {
				for i, old := range s.Backends {
					if old.Addr == b.Addr && (old.Port == b.Port || b.Port == 0) {
						s.Backends[i] = b
						b = nil
						break
					}
				}
			}
			if b != nil {
				s.Backends = append(s.Backends, b)
			}
		}
	}
	for _, s := range c.res.Services {
		// IPVS sets the forwarding method per real server, lbd per
		// service: anything but NAT on any server makes it full NAT.
		s.SNAT = !nat[s]
	}
	c.finish()
	return c.res, nil
}

// ipvsRule is one parsed ipvsadm command line.
type ipvsRule struct {
	cmd     string
	svc     string // "tcp 10.0.0.1:80"
	proto   string
	addr    netip.AddrPort
	sched   string
	flags   []string
	persist time.Duration
	server  netip.AddrPort
	method  string // m, g, i
	weight  int
	uthresh int
}

var ipvsCommands = map[string]string{
	"-A": "add-service", "--add-service": "add-service", "-E": "edit-service", "--edit-service": "edit-service",
	"-a": "add-server", "--add-server": "add-server", "-e": "edit-server", "--edit-server": "edit-server",
}

// ipvsLine reads one line; it warns about what it cannot take and returns
// a rule with an empty cmd for lines that add nothing.
func (c *converter) ipvsLine(pos Pos, f []string) ipvsRule {
	r := ipvsRule{weight: 1}
	cmd, ok := ipvsCommands[f[0]]
	switch {
	case ok:
		r.cmd = cmd
	case f[0] == "-C" || f[0] == "--clear":
		return r
	case f[0] == "--set":
		c.ipvsTimeouts(pos, f[1:])
		return r
	case f[0] == "--start-daemon":
		c.warn(pos, "--start-daemon: lbd does not sync connection state between appliances")
		return r
	default:
		c.warn(pos, "%s: not an ipvsadm-save rule; ignored", strings.Join(f, " "))
		return r
	}
	arg := func(i int) string {
		if i+1 < len(f) {
			return f[i+1]
		}
		return ""
	}
	for i := 1; i < len(f); i++ {
		o := f[i]
		switch o {
		case "-t", "--tcp-service", "-u", "--udp-service":
			r.proto = "tcp"
			if o == "-u" || o == "--udp-service" {
				r.proto = "udp"
			}
			v := arg(i)
			i++
			ap, err := parseIPVSAddr(v)
			if err != nil || ap.Port() == 0 {
				c.warn(pos, "%s %s: expected a numeric VIP:PORT (ipvsadm-save -n; a port 0 service is all-ports persistence, which lbd has not); skipped", o, v)
				return ipvsRule{}
			}
			r.addr = ap
			r.svc = r.proto + " " + ap.String()
		case "--sctp-service":
			c.warn(pos, "%s %s: lbd balances TCP and UDP only; skipped", o, arg(i))
			return ipvsRule{}
		case "-f", "--fwmark-service":
			c.warn(pos, "%s %s: lbd matches VIP, protocol and port, not firewall marks; write one [[service]] per VIP:port the mark selected", o, arg(i))
			return ipvsRule{}
		case "-s", "--scheduler":
			r.sched = arg(i)
			i++
		case "-p", "--persistent":
			r.persist = 300 * time.Second // ipvsadm's default
			if n, err := strconv.Atoi(arg(i)); err == nil {
				r.persist = time.Duration(n) * time.Second
				i++
			}
		case "-M", "--netmask":
			c.warn(pos, "%s %s: lbd keeps persistence per client address, not per network", o, arg(i))
			i++
		case "-b", "--sched-flags":
			r.flags = strings.Split(arg(i), ",")
			i++
		case "-o", "--ops", "ops":
			r.flags = append(r.flags, "ops")
		case "--pe", "pe":
			c.warn(pos, "%s %s: lbd has no persistence engines", o, arg(i))
			i++
		case "-r", "--real-server":
			ap, err := parseIPVSAddr(arg(i))
			if err != nil {
				c.warn(pos, "%s %s: expected a numeric address[:port]; skipped", o, arg(i))
				return ipvsRule{}
			}
			r.server = ap
			i++
		case "-m", "--masquerading":
			r.method = "m"
		case "-g", "--gatewaying", "-i", "--ipip":
			r.method = strings.TrimLeft(o, "-")[:1]
			c.warn(pos, "%s: lbd is NAT only; the service is written as full NAT (snat = true), so backends need no VIP on loopback and see the appliance's address", o)
		case "-w", "--weight":
			n, err := strconv.Atoi(arg(i))
			if err != nil || n < 0 {
				c.warn(pos, "%s %s: bad weight; using 1", o, arg(i))
			} else {
				r.weight = n
			}
			i++
		case "-x", "--u-threshold":
			if n, err := strconv.Atoi(arg(i)); err == nil && n >= 0 {
				r.uthresh = n
			}
			i++
		case "-y", "--l-threshold":
			c.warn(pos, "%s %s: lbd gives a full backend new flows again as soon as it is below max_connections", o, arg(i))
			i++
		case "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum", "-6", "--ipv6":
			if o == "--tun-type" || o == "--tun-port" {
				i++
			}
		default:
			c.warn(pos, "%s: unknown option ignored", o)
		}
	}
	if r.svc == "" {
		c.warn(pos, "%s without -t/-u VIP:PORT; skipped", f[0])
		return ipvsRule{}
	}
	return r
}

// parseIPVSAddr reads 10.0.0.1:80, 10.0.0.1, [2001:db8::1]:80 or [2001:db8::1].
func parseIPVSAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, 0), nil
}

// ipvsTimeouts reads `--set tcp tcpfin udp` (seconds; 0 = unchanged).
func (c *converter) ipvsTimeouts(pos Pos, f []string) {
	ds := make([]time.Duration, 3)
	for i := 0; i < 3 && i < len(f); i++ {
		n, err := strconv.Atoi(f[i])
		if err != nil || n < 0 {
			c.warn(pos, "--set %s: expected seconds; ignored", f[i])
			return
		}
		ds[i] = time.Duration(n) * time.Second
	}
	c.res.Conntrack = Conntrack{TCPEstablished: ds[0], TCPFinWait: ds[1], UDP: ds[2]}
	c.warn(pos, "--set: written as [conntrack] timeouts, which apply to every tracked flow of the appliance, not only load-balanced ones")
}
