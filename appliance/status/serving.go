package status

// Serving reports whether the backend takes new flows: up, or unchecked (no
// health check, so lbd sends it traffic on trust). Counting only "up" made
// a service whose backends have no check look dead ("0/1 up") while it
// served; every view counts with this one rule.
func (b Backend) Serving() bool {
	return b.State == StateUp || b.State == StateUnchecked
}

// ServingCount is how many of the service's backends are Serving.
func (s Service) ServingCount() int {
	n := 0
	for _, b := range s.Backends {
		if b.Serving() {
			n++
		}
	}
	return n
}
