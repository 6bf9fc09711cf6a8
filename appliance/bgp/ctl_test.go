package bgp

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// serveCanned answers each command on a unix socket the way BIRD's CLI
// does: a greeting, then the canned reply for the command.
func serveCanned(t *testing.T, replies map[string]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "bird.ctl")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("0001 BIRD 2.0.12 ready.\n"))
				cmd, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(replies[strings.TrimSpace(cmd)]))
			}()
		}
	}()
	return sock
}

func TestCtl(t *testing.T) {
	sock := serveCanned(t, map[string]string{
		"show protocols": "2002-Name       Proto      Table      State  Since         Info\n" +
			"1002-device1    Device     ---        up     13:02:33.868  \n" +
			" peer_203_0_113_254 BGP        ---        up     13:02:35.101  Established   \n" +
			"0000 \n",
		"configure": "0002-Reading configuration from /run/lbd/bird.conf\n0003 Reconfigured\n",
		"bogus":     "9001 syntax error, unexpected CF_SYM_UNDEFINED\n",
	})
	c := Ctl{Socket: sock}
	out, err := c.Run("show protocols")
	if err != nil {
		t.Fatal(err)
	}
	if p := ParsePeers(out)["peer_203_0_113_254"]; !p.Up() {
		t.Errorf("peer not parsed from the reply:\n%s", out)
	}
	if out, err := c.Run("configure"); err != nil || !strings.Contains(out, "Reconfigured") {
		t.Errorf("configure: %q %v", out, err)
	}
	if _, err := c.Run("bogus"); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("a 9xxx reply is an error, got %v", err)
	}
	if _, err := (Ctl{Socket: filepath.Join(t.TempDir(), "none")}).Run("show status"); err == nil {
		t.Error("no socket: want an error")
	}
}
