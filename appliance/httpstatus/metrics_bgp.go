package httpstatus

import (
	"github.com/prometheus/client_golang/prometheus"

	"lbd/appliance/status"
)

// Fleet metrics ([bgp] only).
var (
	descBGPSessionUp = prometheus.NewDesc("lbd_bgp_session_up", "1 while the BGP session to the neighbor is Established.", []string{"neighbor"}, nil)
	descBFDUp        = prometheus.NewDesc("lbd_bfd_session_up", "1 while the BFD session to the neighbor is Up (neighbors with bfd = true).", []string{"neighbor"}, nil)
	descVIPAnnounced = prometheus.NewDesc("lbd_vip_announced", "1 while the VIP is announced over BGP; the reason label says why not when 0.", []string{"vip", "reason"}, nil)
	descNodeDraining = prometheus.NewDesc("lbd_node_draining", "1 while lbd drain-node (or a stop) has withdrawn every VIP.", nil, nil)
	descBirdRestarts = prometheus.NewDesc("lbd_bird_restarts_total", "Times lbd restarted BIRD after it died.", nil, nil)
	bgpDescs         = []*prometheus.Desc{descBGPSessionUp, descBFDUp, descVIPAnnounced, descNodeDraining, descBirdRestarts}
)

func init() { allDescs = append(allDescs, bgpDescs...) }

func collectBGP(e *emitter, b *status.BGP) {
	if b == nil {
		return
	}
	for _, n := range b.Neighbors {
		e.gauge(descBGPSessionUp, boolFloat(n.Up), n.Address)
		if n.BFD != "" {
			e.gauge(descBFDUp, boolFloat(n.BFD == "Up"), n.Address)
		}
	}
	for _, v := range b.VIPs {
		e.gauge(descVIPAnnounced, boolFloat(v.Announced), v.VIP, v.Reason)
	}
	e.gauge(descNodeDraining, boolFloat(b.Draining))
	e.counter(descBirdRestarts, float64(b.Bird.Restarts))
}
