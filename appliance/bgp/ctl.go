package bgp

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"
)

// Ctl talks BIRD's control-socket protocol (what birdc speaks), so lbd
// needs no birdc and no output scraping of a terminal program: each reply
// line starts with a 4-digit code, '-' continues, ' ' ends the reply, and
// a line starting with a space continues the previous code. Codes 8xxx
// and 9xxx are errors.
type Ctl struct {
	Socket  string
	Timeout time.Duration // per command; 0 = 5s
}

// Run sends one command and returns the reply's text, codes stripped.
func (c Ctl) Run(cmd string) (string, error) {
	to := c.Timeout
	if to == 0 {
		to = 5 * time.Second
	}
	conn, err := net.DialTimeout("unix", c.Socket, to)
	if err != nil {
		return "", fmt.Errorf("bird control socket: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(to))
	r := bufio.NewReader(conn)
	if _, _, err := readReply(r); err != nil { // the "0001 BIRD x ready." greeting
		return "", fmt.Errorf("bird greeting: %w", err)
	}
	if _, err := fmt.Fprintf(conn, "%s\n", cmd); err != nil {
		return "", fmt.Errorf("bird %q: %w", cmd, err)
	}
	text, code, err := readReply(r)
	if err != nil {
		return "", fmt.Errorf("bird %q: %w", cmd, err)
	}
	if code >= 8000 {
		return text, fmt.Errorf("bird %q: %s", cmd, strings.TrimSpace(text))
	}
	return text, nil
}

// readReply reads one reply up to its final line; code is the final
// line's code.
func readReply(r *bufio.Reader) (string, int, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), 0, err
		}
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(line, " ") {
			b.WriteString(line[1:])
			b.WriteByte('\n')
			continue
		}
		if len(line) < 5 {
			return b.String(), 0, fmt.Errorf("bad reply line %q", line)
		}
		var code int
		if _, err := fmt.Sscanf(line[:4], "%d", &code); err != nil {
			return b.String(), 0, fmt.Errorf("bad reply line %q", line)
		}
		b.WriteString(line[5:])
		b.WriteByte('\n')
		if line[4] == ' ' {
			return b.String(), code, nil
		}
	}
}
