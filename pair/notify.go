package pair

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Roles as keepalived names them.
const (
	RoleMaster = "MASTER"
	RoleBackup = "BACKUP"
	RoleFault  = "FAULT"
	RoleStop   = "STOP"
	// RoleUnknown: keepalived has not said yet.
	RoleUnknown = "UNKNOWN"
)

// notifyEvent is one line of keepalived's notify FIFO:
// INSTANCE "lbd_51" MASTER 150
type notifyEvent struct {
	Instance string
	State    string
	Priority int
}

func parseNotify(line string) (notifyEvent, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "INSTANCE" {
		return notifyEvent{}, false
	}
	ev := notifyEvent{Instance: strings.Trim(f[1], `"`), State: f[2]}
	if len(f) > 3 {
		ev.Priority, _ = strconv.Atoi(f[3])
	}
	switch ev.State {
	case RoleMaster, RoleBackup, RoleFault, RoleStop:
		return ev, true
	}
	return notifyEvent{}, false
}

// makeFIFO creates the notify FIFO (replacing anything else at path).
func makeFIFO(path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeNamedPipe != 0 {
			return nil
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return nil
}

// readNotify reads the FIFO until ctx ends and hands each transition to
// f. It opens the FIFO read-write so it never sees end-of-file while
// keepalived restarts.
func readNotify(ctx context.Context, path string, f func(notifyEvent)) error {
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open notify fifo: %w", err)
	}
	go func() { <-ctx.Done(); fd.Close() }()
	sc := bufio.NewScanner(fd)
	for sc.Scan() {
		if ev, ok := parseNotify(sc.Text()); ok {
			f(ev)
		}
	}
	return nil
}
