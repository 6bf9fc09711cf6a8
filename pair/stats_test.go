package pair

import (
	"testing"

	"lbd/appliance/status"
)

// Output of conntrackd 1.4.7 -s (Debian bookworm) with a UDP sync link.
const statsOut = `cache internal:
current active connections:	          12
connections created:		          14	failed:	           0
connections updated:		          30	failed:	           0
connections destroyed:		           2	failed:	           0

cache external:
current active connections:	          86
connections created:		          90	failed:	           0
connections updated:		           0	failed:	           0
connections destroyed:		           4	failed:	           0

traffic processed:
                   0 Bytes                         0 Pckts

UDP traffic (active device=lan):
                4096 Bytes sent                 8192 Bytes recv
                  40 Pckts sent                   80 Pckts recv
                   1 Error send                    2 Error recv

message tracking:
                   0 Malformed msgs                    3 Lost msgs
`

func TestParseStats(t *testing.T) {
	got := ParseStats(statsOut)
	want := status.FlowSync{Internal: 12, External: 86, BytesSent: 4096, BytesRecv: 8192, MsgSent: 40, MsgRecv: 80, SendErrors: 1, RecvErrors: 2, LostMessages: 3}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestParseNotify(t *testing.T) {
	ev, ok := parseNotify(`INSTANCE "lbd_51" MASTER 150`)
	if !ok || ev.Instance != "lbd_51" || ev.State != RoleMaster || ev.Priority != 150 {
		t.Errorf("parsed %+v %v", ev, ok)
	}
	for _, bad := range []string{`GROUP "g" MASTER 0`, `INSTANCE "lbd_51" DELETED 0`, ``, `INSTANCE`} {
		if _, ok := parseNotify(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseAdvert(t *testing.T) {
	// VRRPv3 advert: version 3 type 1, vrid 51, priority 150, 1 address,
	// interval 20 centiseconds.
	vrid, prio, iv, ok := parseAdvert([]byte{0x31, 51, 150, 1, 0x00, 20, 0, 0, 203, 0, 113, 10})
	if !ok || vrid != 51 || prio != 150 || iv.Milliseconds() != 200 {
		t.Errorf("got %d %d %s %v", vrid, prio, iv, ok)
	}
	if _, _, _, ok := parseAdvert([]byte{0x32, 51, 150, 1, 0, 20, 0, 0}); ok {
		t.Error("a non-advert type accepted")
	}
}
