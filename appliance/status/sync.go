package status

import "time"

// Sync reports whether the kernel holds what lbd wants. The sync loop
// retries a failed apply with backoff; until one succeeds, InSync is false
// and OutOfSyncSince says since when.
type Sync struct {
	InSync         bool      `json:"in_sync"`
	OutOfSyncSince time.Time `json:"out_of_sync_since,omitzero"`
	// Failures counts failed applies since lbd started
	// (lbd_sync_failures_total).
	Failures  uint64    `json:"failures"`
	LastError string    `json:"last_error,omitempty"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	// LastAttempt is the last apply tried, successful or not.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// Syncs counts successful applies (transactions sent or found empty).
	Syncs uint64 `json:"syncs"`
}
