// Package httpstatus serves lbd's status over HTTP on [appliance]
// status_listen: an HTML page, /status.json and Prometheus /metrics, all
// rendered from one status.Snapshot so they never disagree with each other
// or with `lbd status` and the console.
package httpstatus

import (
	"encoding/json"
	"fmt"
	"io"

	"lbd/appliance/status"
)

// EncodeJSON writes s the one way lbd prints status as JSON: indented by
// two spaces, with a trailing newline. `lbd status --json` and
// /status.json both use it, so their bytes are identical.
func EncodeJSON(w io.Writer, s status.Snapshot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}
