package netiftest

import (
	"bytes"
	"sync"
)

// LogBuffer is a log sink safe to read while the code under test writes it
// from other goroutines: a slog handler's writer in the tests of netif and
// host (which log one line per change, so the log tells what happened), or
// a child process's output (dnsmasq in the dhcp tests).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Take returns what was logged since the last Take and forgets it.
func (l *LogBuffer) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}
