package httpstatus

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lbd/appliance/status"
)

// Handler serves the status endpoints, reading fetch on every request:
//
//	/             HTML page with the console's content, auto-refreshing
//	/status.json  EncodeJSON of the snapshot (same bytes as `lbd status --json`)
//	/metrics      Prometheus text format: the snapshot's Collector, Go
//	              runtime and process metrics, and any extra collectors
//
// Only GET and HEAD are served. Which address it listens on (never the WAN
// side unless the config says so) is the caller's choice. The error is a
// registration conflict among extra collectors.
func Handler(fetch func() status.Snapshot, extra ...prometheus.Collector) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	cs := append([]prometheus.Collector{
		NewCollector(fetch),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, extra...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("status handler: register metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, err := renderPage(fetch())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		if err := EncodeJSON(&b, fetch()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b.Bytes())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return noCache(mux), nil
}

// noCache marks every answer as live state, and stops browsers from
// guessing content types.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
