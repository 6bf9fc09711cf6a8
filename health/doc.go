// Package health runs the backend health checks of lbd and turns their
// results into up/down transitions with rise/fall hysteresis.
//
// It is pure Go and knows nothing about nftables or the config file: the
// integrator maps [service.health] onto Spec, hands the Monitor one Target
// per (service, backend), and turns each Transition into slot rewrites.
//
// Files, one job each:
//
//	spec.go     the check definition, its defaults and validation
//	parse.go    config-form helpers (expect_status, udp payload)
//	check.go    one bounded check run, and error -> short human reason
//	tcp.go, http.go, udp.go, exec.go   the checkers
//	state.go    the rise/fall state machine of one target
//	target.go   Target, its dedup key, Transition and TargetStatus
//	monitor.go  the set of running checks (Set, Snapshot, Close)
//	probe.go    the loop of one deduplicated check
package health
