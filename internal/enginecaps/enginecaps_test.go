package enginecaps

import (
	"os"
	"syscall"
	"testing"
)

func TestApplyOnlyWhenNotRoot(t *testing.T) {
	attr := &syscall.SysProcAttr{}
	Apply(attr)
	if os.Geteuid() == 0 && len(attr.AmbientCaps) != 0 {
		t.Fatalf("as root the child inherits root's capabilities; got ambient %v", attr.AmbientCaps)
	}
	if os.Geteuid() != 0 && len(attr.AmbientCaps) != len(Net) {
		t.Fatalf("not root: ambient %v, want %v", attr.AmbientCaps, Net)
	}
	Apply(nil) // must not panic
}
