package sysctl

import (
	"fmt"
	"strconv"
)

// ConntrackUsage reads the number of tracked flows and the table size of
// the caller's network namespace. nf_conntrack_max is global, so in a child
// namespace max is the host's limit while count is the namespace's own.
func ConntrackUsage() (count, max int, err error) {
	return conntrackUsage(procSys)
}

func conntrackUsage(root string) (count, max int, err error) {
	count, err = readInt(root, "net.netfilter.nf_conntrack_count")
	if err != nil {
		return 0, 0, err
	}
	max, err = readInt(root, "net.netfilter.nf_conntrack_max")
	if err != nil {
		return 0, 0, err
	}
	return count, max, nil
}

func readInt(root, name string) (int, error) {
	v, err := readValue(keyPath(root, name))
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %w", name, missingHint(name, bareErr(err)))
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %q is not a number", name, v)
	}
	return n, nil
}
