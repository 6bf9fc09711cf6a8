package httpstatus

import (
	"github.com/prometheus/client_golang/prometheus"

	"lbd/appliance/status"
)

// Metrics of a node of an HA pair; absent on a single appliance.

// haRoles are the values of lbd_ha_role's role label, one-hot.
var haRoles = []string{"MASTER", "BACKUP", "FAULT", "STOP", "UNKNOWN"}

var (
	descHARole        = prometheus.NewDesc("lbd_ha_role", "keepalived's role for this node, one-hot over MASTER, BACKUP, FAULT, STOP and UNKNOWN; only the master holds the VIPs.", []string{"role"}, nil)
	descHATransitions = prometheus.NewDesc("lbd_ha_transitions_total", "Role transitions keepalived reported since lbd started.", nil, nil)
	descHAServing     = prometheus.NewDesc("lbd_ha_serving", "1 when this node can serve; 0 holds keepalived in FAULT so the peer takes over.", nil, nil)
	descHAPeerAdvert  = prometheus.NewDesc("lbd_ha_peer_last_advert_timestamp_seconds", "Unix time of the last VRRP advert heard from the peer (only a master advertises).", nil, nil)
	descHAPeerPrio    = prometheus.NewDesc("lbd_ha_peer_priority", "Priority in the peer's last advert (0: the peer gave the VIPs up).", nil, nil)
	descHAFlows       = prometheus.NewDesc("lbd_ha_sync_flows", "Flows in conntrackd's caches: internal (this node's kernel) and external (the peer's, committed on takeover).", []string{"cache"}, nil)
	descHASyncPackets = prometheus.NewDesc("lbd_ha_sync_packets_total", "conntrackd sync-link packets by direction.", []string{"direction"}, nil)
	descHASyncErrors  = prometheus.NewDesc("lbd_ha_sync_errors_total", "conntrackd sync-link errors by direction, and lost messages.", []string{"direction"}, nil)
	descHARestarts    = prometheus.NewDesc("lbd_ha_process_restarts_total", "Restarts of keepalived and conntrackd after they died.", []string{"process"}, nil)
)

func init() {
	allDescs = append(allDescs, descHARole, descHATransitions, descHAServing, descHAPeerAdvert, descHAPeerPrio,
		descHAFlows, descHASyncPackets, descHASyncErrors, descHARestarts)
}

func collectHA(e *emitter, h *status.HA) {
	if h == nil {
		return
	}
	for _, r := range haRoles {
		e.gauge(descHARole, boolFloat(h.Role == r), r)
	}
	e.counter(descHATransitions, float64(h.Transitions))
	e.gauge(descHAServing, boolFloat(h.Serving))
	if a := h.PeerAdvert; a != nil {
		e.gauge(descHAPeerAdvert, float64(a.At.UnixNano())/1e9)
		e.gauge(descHAPeerPrio, float64(a.Priority))
	}
	fs := h.FlowSync
	e.gauge(descHAFlows, float64(fs.Internal), "internal")
	e.gauge(descHAFlows, float64(fs.External), "external")
	e.counter(descHASyncPackets, float64(fs.MsgSent), "sent")
	e.counter(descHASyncPackets, float64(fs.MsgRecv), "received")
	e.counter(descHASyncErrors, float64(fs.SendErrors), "send")
	e.counter(descHASyncErrors, float64(fs.RecvErrors), "receive")
	e.counter(descHASyncErrors, float64(fs.LostMessages), "lost")
	e.counter(descHARestarts, float64(h.Keepalived.Restarts), "keepalived")
	e.counter(descHARestarts, float64(h.Conntrackd.Restarts), "conntrackd")
}
