package transport

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one Transport's Prometheus metrics.
type metrics struct {
	reg      prometheus.Registerer // nil: not registered
	state    *prometheus.GaugeVec
	expiry   prometheus.Gauge
	renewals *prometheus.CounterVec
	bundle   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, id Identity) (*metrics, error) {
	labels := prometheus.Labels{"identity": id.Names[0], "profile": id.Profile}
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "certctl_transport_state", ConstLabels: labels,
			Help: "1 for the identity's current renewal state (valid, renewing, expired, closed), 0 for the others.",
		}, []string{"state"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certctl_transport_certificate_expiry_timestamp_seconds", ConstLabels: labels,
			Help: "NotAfter of the current certificate, in Unix seconds.",
		}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_transport_renewals_total", ConstLabels: labels,
			Help: "Certificates obtained (enrollment and renewal) by outcome (ok, error).",
		}, []string{"outcome"}),
		bundle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_transport_bundle_refreshes_total", ConstLabels: labels,
			Help: "Trust bundle fetches from the CA by outcome (ok, error).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"ok", "error"} {
		m.renewals.WithLabelValues(o)
		m.bundle.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("transport: register metrics for identity %q: %w (one Transport per identity and registerer)", id.Names[0], err)
		}
	}
	m.reg = reg
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.state, m.expiry, m.renewals, m.bundle}
}

func (m *metrics) setState(s State) {
	for st, name := range stateNames {
		v := 0.0
		if st == s {
			v = 1
		}
		m.state.WithLabelValues(name).Set(v)
	}
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
	m.reg = nil
}
