package httpstatus

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"lbd/appliance/status"
)

// backendStates are the values of lbd_backend_state's state label, one-hot:
// exactly one is 1 per backend, so `lbd_backend_state{state="down"} == 1`
// selects down backends and sum by (state) counts them.
var backendStates = []string{status.StateUp, status.StateDown, status.StateDrain, status.StateUnchecked}

// Collector exposes a snapshot as Prometheus metrics. It holds no metric
// state of its own: every scrape calls fetch once and reports exactly
// what the snapshot says, so /metrics and /status.json agree.
type Collector struct {
	fetch func() status.Snapshot
}

// NewCollector returns a Collector reading fetch at scrape time.
func NewCollector(fetch func() status.Snapshot) *Collector {
	return &Collector{fetch: fetch}
}

var (
	sb = []string{"service", "backend"}

	descUp        = prometheus.NewDesc("lbd_up", "1 while lbd is running and serving its status.", nil, nil)
	descBuildInfo = prometheus.NewDesc("lbd_build_info", "Always 1; the version label says which lbd runs.", []string{"version"}, nil)
	descStartTime = prometheus.NewDesc("lbd_start_time_seconds", "Unix time lbd started.", nil, nil)

	descReloads        = prometheus.NewDesc("lbd_reloads_total", "Config reloads by result (ok: applied; failed: refused, old config kept).", []string{"result"}, nil)
	descReloadOK       = prometheus.NewDesc("lbd_config_last_reload_successful", "1 if the last config load or reload was applied, 0 if it was refused.", nil, nil)
	descSyncFailures   = prometheus.NewDesc("lbd_sync_failures_total", "Applies of the desired state the kernel refused (each is retried with backoff).", nil, nil)
	descSyncInSync     = prometheus.NewDesc("lbd_sync_in_sync", "1 when the kernel holds what lbd wants, 0 while a failed apply is being retried.", nil, nil)
	descSyncOutSince   = prometheus.NewDesc("lbd_sync_out_of_sync_since_timestamp_seconds", "Unix time the kernel went out of sync; 0 when in sync.", nil, nil)
	descSyncs          = prometheus.NewDesc("lbd_syncs_total", "Successful applies by the sync loop (bursts of changes coalesce into one).", nil, nil)
	descConntrack      = prometheus.NewDesc("lbd_conntrack_entries", "Flows in the conntrack (NAT) table.", nil, nil)
	descConntrackMax   = prometheus.NewDesc("lbd_conntrack_max", "Size of the conntrack (NAT) table (net.netfilter.nf_conntrack_max).", nil, nil)
	descInterfaceUp    = prometheus.NewDesc("lbd_interface_up", "1 when the interface has carrier.", []string{"interface"}, nil)
	descLeaseExpiry    = prometheus.NewDesc("lbd_dhcp_lease_expiry_timestamp_seconds", "Unix time the interface's DHCP lease expires.", []string{"interface"}, nil)
	descServiceInfo    = prometheus.NewDesc("lbd_service_info", "Always 1; labels describe the service.", []string{"service", "vip", "port", "protocol", "scheduler"}, nil)
	descPackets        = prometheus.NewDesc("lbd_service_packets_total", "Packets of new flows to the service's VIP (nftables counter).", []string{"service"}, nil)
	descBytes          = prometheus.NewDesc("lbd_service_bytes_total", "Bytes of new flows to the service's VIP (nftables counter).", []string{"service"}, nil)
	descRefused        = prometheus.NewDesc("lbd_service_refused_total", "New connections refused, by reason.", []string{"service", "reason"}, nil)
	descBackendUp      = prometheus.NewDesc("lbd_backend_up", "1 when the backend takes new flows (state up), else 0.", sb, nil)
	descBackendState   = prometheus.NewDesc("lbd_backend_state", "Backend state, one-hot over up, down, drain and unchecked.", append(sb, "state"), nil)
	descBackendWeight  = prometheus.NewDesc("lbd_backend_weight", "Configured weight (0 = drain).", sb, nil)
	descBackendConns   = prometheus.NewDesc("lbd_backend_active_connections", "Tracked flows currently NATed to the backend.", sb, nil)
	descBackendTotal   = prometheus.NewDesc("lbd_backend_connections_total", "Flows NATed to the backend since lbd started: ended ones plus live ones (conntrack accounting).", sb, nil)
	descBackendPackets = prometheus.NewDesc("lbd_backend_packets_total", "Packets of the backend's flows since lbd started; direction in = from clients, out = towards clients.", append(sb, "direction"), nil)
	descBackendBytes   = prometheus.NewDesc("lbd_backend_bytes_total", "Bytes (whole IP packets) of the backend's flows since lbd started; direction in = from clients, out = towards clients.", append(sb, "direction"), nil)
	descCheckDuration  = prometheus.NewDesc("lbd_backend_check_duration_seconds", "Duration of the last health check.", sb, nil)
	descChecks         = prometheus.NewDesc("lbd_backend_checks_total", "Health checks run, by result.", append(sb, "result"), nil)
	allDescs           = []*prometheus.Desc{descUp, descBuildInfo, descStartTime, descReloads, descReloadOK, descSyncFailures, descSyncInSync, descSyncOutSince, descSyncs, descConntrack, descConntrackMax, descInterfaceUp, descLeaseExpiry, descServiceInfo, descPackets, descBytes, descRefused, descBackendUp, descBackendState, descBackendWeight, descBackendConns, descBackendTotal, descBackendPackets, descBackendBytes, descCheckDuration, descChecks}
	refusalReasonNames = []string{"no_backend", "max_connections", "rate", "per_client_rate", "per_client_connections", "denied", "throttle"}
)

// Describe sends every metric's descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads one snapshot and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.fetch()
	e := emitter{ch: ch}
	e.gauge(descUp, 1)
	e.gauge(descBuildInfo, 1, s.Version)
	if !s.StartedAt.IsZero() {
		e.gauge(descStartTime, float64(s.StartedAt.UnixNano())/1e9)
	}
	e.counter(descReloads, float64(s.Reloads.OK), "ok")
	e.counter(descReloads, float64(s.Reloads.Failed), "failed")
	e.gauge(descReloadOK, boolFloat(s.Config.LastError == ""))
	e.counter(descSyncFailures, float64(s.Sync.Failures))
	e.gauge(descSyncInSync, boolFloat(s.Sync.InSync))
	outSince := 0.0
	if !s.Sync.OutOfSyncSince.IsZero() {
		outSince = float64(s.Sync.OutOfSyncSince.UnixNano()) / 1e9
	}
	e.gauge(descSyncOutSince, outSince)
	e.counter(descSyncs, float64(s.Sync.Syncs))
	e.gauge(descConntrack, float64(s.Conntrack.Count))
	e.gauge(descConntrackMax, float64(s.Conntrack.Max))
	for _, n := range s.NICs {
		e.gauge(descInterfaceUp, boolFloat(n.LinkUp), n.Name)
		if n.DHCP && !n.LeaseExpiry.IsZero() {
			e.gauge(descLeaseExpiry, float64(n.LeaseExpiry.Unix()), n.Name)
		}
	}
	collectHA(&e, s.HA)
	seen := map[string]bool{}
	for _, svc := range s.Services {
		if seen[svc.Name] {
			continue // one bad entry must not fail the whole scrape
		}
		seen[svc.Name] = true
		collectService(&e, svc)
	}
	collectBGP(&e, s.BGP)
}

func collectService(e *emitter, svc status.Service) {
	e.gauge(descServiceInfo, 1, svc.Name, svc.VIP, strconv.Itoa(svc.Port), svc.Protocol, svc.Scheduler)
	e.counter(descPackets, float64(svc.Packets), svc.Name)
	e.counter(descBytes, float64(svc.Bytes), svc.Name)
	r := svc.Refused
	for i, n := range []uint64{r.NoBackend, r.MaxConnections, r.Rate, r.PerClientRate, r.PerClientConns, r.Denied, r.ThrottleRefused} {
		e.counter(descRefused, float64(n), svc.Name, refusalReasonNames[i])
	}
	seen := map[string]bool{}
	for _, b := range svc.Backends {
		if seen[b.Address] {
			continue
		}
		seen[b.Address] = true
		e.gauge(descBackendUp, boolFloat(b.State == status.StateUp), svc.Name, b.Address)
		for _, st := range backendStates {
			e.gauge(descBackendState, boolFloat(b.State == st), svc.Name, b.Address, st)
		}
		e.gauge(descBackendWeight, float64(b.Weight), svc.Name, b.Address)
		e.gauge(descBackendConns, float64(b.ActiveConnections), svc.Name, b.Address)
		tr := b.Traffic
		e.counter(descBackendTotal, float64(tr.Connections), svc.Name, b.Address)
		e.counter(descBackendPackets, float64(tr.PacketsIn), svc.Name, b.Address, "in")
		e.counter(descBackendPackets, float64(tr.PacketsOut), svc.Name, b.Address, "out")
		e.counter(descBackendBytes, float64(tr.BytesIn), svc.Name, b.Address, "in")
		e.counter(descBackendBytes, float64(tr.BytesOut), svc.Name, b.Address, "out")
		e.gauge(descCheckDuration, b.LastCheckLatency, svc.Name, b.Address)
		e.counter(descChecks, float64(b.ChecksPassed), svc.Name, b.Address, "passed")
		e.counter(descChecks, float64(b.ChecksFailed), svc.Name, b.Address, "failed")
	}
}

// emitter sends const metrics, turning a bad label value (invalid UTF-8)
// into an invalid metric the registry reports, as client_golang expects.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.GaugeValue, v, labels)
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.CounterValue, v, labels)
}

func (e emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
