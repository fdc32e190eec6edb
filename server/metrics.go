package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/certctl/certctl/certdb"
)

type metrics struct {
	issued   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	requests *prometheus.CounterVec
	reqTime  *prometheus.HistogramVec
	revoked  *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, st any) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_issuance_total", Help: "Certificate issuance requests by profile and outcome.",
		}, []string{"profile", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "certctl_issuance_duration_seconds", Help: "Time to issue a certificate (policy, lint, sign, store) by profile and outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"profile", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		reqTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "certctl_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certctl_revocations_total", Help: "Revocation requests by outcome.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.issued, m.latency, m.requests, m.reqTime, m.revoked,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if ps, ok := st.(poolStater); ok {
		reg.MustRegister(&poolCollector{src: ps})
	}
	return m
}

// poolStater is implemented by stores with a connection pool
// (certdb/postgres).
type poolStater interface {
	PoolStats() certdb.PoolStats
}

var (
	poolDescs = struct{ acquired, idle, total, max, acquires, empty *prometheus.Desc }{
		prometheus.NewDesc("certctl_db_pool_acquired_conns", "Connections in use.", nil, nil),
		prometheus.NewDesc("certctl_db_pool_idle_conns", "Idle connections.", nil, nil),
		prometheus.NewDesc("certctl_db_pool_total_conns", "Open connections.", nil, nil),
		prometheus.NewDesc("certctl_db_pool_max_conns", "Pool size limit.", nil, nil),
		prometheus.NewDesc("certctl_db_pool_acquires_total", "Connections acquired from the pool.", nil, nil),
		prometheus.NewDesc("certctl_db_pool_empty_acquires_total", "Acquires that had to wait for a connection.", nil, nil),
	}
)

type poolCollector struct{ src poolStater }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolDescs.acquired
	ch <- poolDescs.idle
	ch <- poolDescs.total
	ch <- poolDescs.max
	ch <- poolDescs.acquires
	ch <- poolDescs.empty
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.PoolStats()
	ch <- prometheus.MustNewConstMetric(poolDescs.acquired, prometheus.GaugeValue, float64(s.Acquired))
	ch <- prometheus.MustNewConstMetric(poolDescs.idle, prometheus.GaugeValue, float64(s.Idle))
	ch <- prometheus.MustNewConstMetric(poolDescs.total, prometheus.GaugeValue, float64(s.Total))
	ch <- prometheus.MustNewConstMetric(poolDescs.max, prometheus.GaugeValue, float64(s.Max))
	ch <- prometheus.MustNewConstMetric(poolDescs.acquires, prometheus.CounterValue, float64(s.AcquireCount))
	ch <- prometheus.MustNewConstMetric(poolDescs.empty, prometheus.CounterValue, float64(s.EmptyAcquireCount))
}
