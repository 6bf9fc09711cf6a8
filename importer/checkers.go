package importer

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"lbd/health"
)

// checker converts one keepalived health checker of a real server. It
// returns nil for checkers lbd cannot run (the warning says why).
func (c *converter) checker(n *node, parent checkTimers) *Health {
	// Messages name the checker, not the real server: the line says which
	// one, and the same message on ten servers folds into one warning.
	label := n.key
	short := label
	switch n.key {
	case "PING_CHECK":
		c.warn(n.pos, "%s: lbd has no ICMP check; the backend is not checked by it (add a tcp or http check)", label)
		return nil
	case "FILE_CHECK", "BFD_CHECK":
		c.warn(n.pos, "%s: lbd has no %s; not imported", label, n.key)
		return nil
	}
	h := &Health{Rise: 1}
	var t checkTimers
	// keepalived's per-checker defaults (check_api.c): retry 1, 0 for
	// MISC_CHECK, 3 for DNS_CHECK; delay_before_retry 1s, 3s for HTTP.
	retry, dbr := 1, time.Second
	var urls []*node
	var miscTimeout time.Duration
	var sni string
	enableSNI := false
	for _, k := range n.children {
		if c.timerKey(k, &t) {
			continue
		}
		switch k.key {
		case "connect_port":
			if p, err := strconv.Atoi(k.arg(0)); err == nil && p > 0 && p < 65536 {
				h.Port = p
			} else {
				c.warn(k.pos, "%s: connect_port %s: bad port; ignored", label, k.arg(0))
			}
		case "connect_ip":
			c.warn(k.pos, "%s: connect_ip %s: lbd checks the backend's own address; not imported", label, k.arg(0))
		case "bindto", "bind_port", "bind_if", "fwmark":
			c.warn(k.pos, "%s: %s: lbd's checks use the kernel's source address and no mark; ignored", label, k.key)
		case "log_all_failures":
			// lbd logs every state transition; failures are counted in /metrics.
		case "url":
			urls = append(urls, k)
		case "http_protocol":
			c.warn(k.pos, "%s: http_protocol %s: lbd's http check speaks HTTP/1.1 with Connection: close", label, k.arg(0))
		case "fast_recovery", "tls_compliant":
			// lbd: rise = 1 already brings a backend back at its first pass.
		case "enable_sni":
			enableSNI = true
		case "sni_name":
			sni, enableSNI = k.arg(0), true
		case "misc_path":
			argv, err := splitArgv(strings.Join(k.args, " "))
			if err != nil {
				c.warn(k.pos, "%s: misc_path: %v", label, err)
			}
			h.Command = argv
		case "misc_timeout":
			if v, ok := c.integer(k, k.arg(0), 1<<22); ok {
				miscTimeout = time.Duration(v) * time.Second
			}
		case "misc_dynamic":
			c.warn(k.pos, "%s: misc_dynamic: lbd reads exit 0 as up and anything else as down; the exit code does not set the weight", label)
		case "user":
			c.warn(k.pos, "%s: user %s: lbd runs the command as its own user", label, strings.Join(k.args, " "))
		case "helo_name":
			// SMTP_CHECK: reported once below.
		case "type", "name":
			// DNS_CHECK: used below.
		case "payload", "require_reply", "min_reply_length", "max_reply_length":
			// UDP_CHECK: used below.
		default:
			c.warn(k.pos, "%s: unknown keyword %q ignored", label, k.key)
		}
	}
	t = t.inherit(parent)
	switch n.key {
	case "TCP_CHECK":
		h.Type = "tcp"
	case "HTTP_GET", "SSL_GET":
		h.Type = "http"
		dbr = 3 * time.Second
		if n.key == "SSL_GET" {
			h.Type = "https"
			// keepalived's SSL_GET does not verify the certificate.
			h.TLSSkipVerify = true
			if enableSNI {
				h.SNI = sni
			}
		}
		c.urls(h, urls, label, n)
		if t.virtualhost != nil && h.Host == "" {
			h.Host = *t.virtualhost
		}
		if enableSNI && h.SNI == "" {
			h.SNI = h.Host
		}
	case "MISC_CHECK":
		h.Type = "exec"
		retry = 0
		if len(h.Command) == 0 {
			c.warn(n.pos, "%s: no misc_path; skipped", label)
			return nil
		}
	case "SMTP_CHECK":
		h.Type = "tcp"
		c.warn(n.pos, "%s: written as a tcp check: lbd connects but does not speak SMTP (no HELO)", short)
	case "DNS_CHECK":
		h.Type = "udp"
		retry = 3
		h.Payload = "hex:" + hex.EncodeToString(dnsQuery(childArg(n, "name", "."), childArg(n, "type", "SOA")))
		c.warn(n.pos, "%s: written as a udp check sending the same DNS query; any reply counts as up (keepalived also checks the answer)", label)
	case "UDP_CHECK":
		h.Type = "udp"
		c.udpCheck(h, n, label)
	}
	if t.retry != nil {
		retry = *t.retry
	}
	if t.delayBeforeRetry != nil {
		dbr = *t.delayBeforeRetry
	}
	h.Interval = kaDelayLoop
	if t.delayLoop != nil {
		h.Interval = *t.delayLoop
	}
	if h.Interval < health.MinInterval {
		c.warn(n.pos, "%s: delay_loop %s is below lbd's minimum; using %s", short, h.Interval, health.MinInterval)
		h.Interval = health.MinInterval
	}
	h.Timeout = kaConnectTimeout
	if t.connectTimeout != nil {
		h.Timeout = *t.connectTimeout
	}
	if n.key == "MISC_CHECK" {
		// misc_timeout, else delay_loop (check_misc.c).
		h.Timeout = h.Interval
		if miscTimeout > 0 {
			h.Timeout = miscTimeout
		}
	}
	if h.Timeout <= 0 {
		h.Timeout = time.Millisecond
	}
	if h.Timeout > h.Interval {
		c.warn(n.pos, "%s: timeout %s is longer than the check interval %s; lbd needs timeout <= interval, so it is %s", short, fmtDur(h.Timeout), fmtDur(h.Interval), fmtDur(h.Interval))
		h.Timeout = h.Interval
	}
	// keepalived marks a server down after the first failure plus `retry`
	// failed retries: fall = retry + 1.
	h.Fall = retry + 1
	if h.Fall > health.MaxRiseFall {
		c.warn(n.pos, "%s: retry %d is more than lbd allows; fall = %d", short, retry, health.MaxRiseFall)
		h.Fall = health.MaxRiseFall
	}
	if h.Fall > 1 && dbr != h.Interval {
		c.warn(n.pos, "%s: delay_before_retry %s: lbd checks every interval (%s) and retries no sooner, so a dead backend goes down after about %s (keepalived: %s)",
			short, fmtDur(dbr), fmtDur(h.Interval), fmtDur(time.Duration(h.Fall)*h.Interval), fmtDur(h.Interval+time.Duration(retry)*dbr))
	}
	return h
}

func childArg(n *node, key, def string) string {
	for _, k := range n.children {
		if k.key == key && k.arg(0) != "" {
			return k.arg(0)
		}
	}
	return def
}

// urls maps HTTP_GET's url blocks; lbd checks one path.
func (c *converter) urls(h *Health, urls []*node, label string, n *node) {
	if len(urls) == 0 {
		c.warn(n.pos, "%s: no url block; checking \"/\"", label)
		h.Path, h.ExpectStatus = "/", []string{"200-299"}
		return
	}
	for i, u := range urls {
		if i > 0 {
			c.warn(u.pos, "%s: url %s: lbd checks one path per backend; only %s is checked", label, childArg(u, "path", "?"), h.Path)
			continue
		}
		for _, k := range u.children {
			switch k.key {
			case "path":
				h.Path = k.arg(0)
				if !strings.HasPrefix(h.Path, "/") {
					h.Path = "/" + h.Path
				}
			case "status_code":
				for _, a := range k.args {
					if _, err := health.ParseExpectStatus([]string{a}); err != nil {
						c.warn(k.pos, "%s: status_code %s: %v; ignored", label, a, err)
						continue
					}
					h.ExpectStatus = append(h.ExpectStatus, a)
				}
			case "digest":
				c.warn(k.pos, "%s: digest: lbd does not hash the body; use expect_body with a string the healthy page contains", label)
			case "virtualhost":
				h.Host = k.arg(0)
			case "regex":
				if re := strings.Join(k.args, " "); regexp.QuoteMeta(re) == re {
					h.ExpectBody = re // a plain string: the same test as a substring
				} else {
					c.warn(k.pos, "%s: regex %q: lbd matches a plain substring (expect_body), not a regular expression; not imported", label, re)
				}
			case "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset":
				c.warn(k.pos, "%s: %s: lbd has no regular-expression body match; not imported", label, k.key)
			case "tls_compliant":
			default:
				c.warn(k.pos, "%s: url: unknown keyword %q ignored", label, k.key)
			}
		}
		if h.Path == "" {
			h.Path = "/"
		}
	}
	if len(h.ExpectStatus) == 0 {
		// keepalived's default; lbd's own (200-399) is wider.
		h.ExpectStatus = []string{"200-299"}
	}
}

// udpCheck maps UDP_CHECK's payload and require_reply (keepalived's HEX_STR).
func (c *converter) udpCheck(h *Health, n *node, label string) {
	for _, k := range n.children {
		switch k.key {
		case "payload":
			b, err := kaHex(k.args)
			if err != nil {
				c.warn(k.pos, "%s: payload: %v; not imported", label, err)
				continue
			}
			h.Payload = "hex:" + hex.EncodeToString(b)
		case "require_reply":
			if len(k.args) == 0 {
				continue // lbd's udp check needs a reply anyway
			}
			b, err := kaHex(k.args)
			if err == nil && printable(b) {
				h.Expect = string(b)
			} else {
				c.warn(k.pos, "%s: require_reply %s: lbd's expect is a text substring of the reply; not imported", label, strings.Join(k.args, " "))
			}
		case "min_reply_length", "max_reply_length":
			c.warn(k.pos, "%s: %s: lbd does not check the reply's length", label, k.key)
		}
	}
	if h.Payload == "" {
		c.warn(n.pos, "%s: no payload: keepalived sends random bytes, lbd sends an empty datagram", label)
	}
}

func printable(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// kaHex reads keepalived's free-form HEX_STR: each space-separated group is
// read two digits at a time, and a lone last digit is one byte ("Ab12f 3"
// is AB 12 0F 03). X wildcards are not representable.
func kaHex(groups []string) ([]byte, error) {
	var out []byte
	for _, g := range groups {
		for i := 0; i < len(g); i += 2 {
			chunk := g[i:min(i+2, len(g))]
			v, err := strconv.ParseUint(chunk, 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad hex %q", g)
			}
			out = append(out, byte(v))
		}
	}
	return out, nil
}

// dnsQuery builds the query DNS_CHECK sends: one question, recursion
// desired, fixed id (lbd sends the same bytes every time).
func dnsQuery(name, qtype string) []byte {
	types := map[string]uint16{"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
	t, ok := types[strings.ToUpper(qtype)]
	if !ok {
		t = 6
	}
	q := []byte{0x6c, 0x62, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(strings.Trim(name, "."), ".") {
		if label == "" || len(label) > 63 {
			continue
		}
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0, byte(t>>8), byte(t), 0, 1)
	return q
}

// splitArgv splits a keepalived script line into argv: spaces separate
// words, single quotes group (keepalived.conf(5), "Quoted strings").
func splitArgv(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, quote := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			quote, inWord = !quote, true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case (ch == ' ' || ch == '\t') && !quote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	if quote {
		return out, fmt.Errorf("unterminated ' in %q", s)
	}
	return out, nil
}
