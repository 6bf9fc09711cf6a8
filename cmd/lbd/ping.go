package main

import (
	"fmt"
	"io"
	"time"

	"lbd/appliance/control"
)

// cmdPing is `lbd ping`: exit 0 when the daemon is ready (see its help).
func cmdPing(socket string, stdout, stderr io.Writer) int {
	resp, err := control.Call(socket, control.Request{Command: "ping"}, 10*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "lbd ping:", err)
		return 1
	}
	if !resp.OK {
		fmt.Fprintln(stderr, "lbd ping:", resp.Message)
		return 1
	}
	fmt.Fprintln(stdout, resp.Message)
	return 0
}
