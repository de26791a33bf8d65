package producer

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// ownMetrics are the metrics of ownership and discovery.
type ownMetrics struct {
	owned       prometheus.Gauge
	rebalances  prometheus.Counter
	fenced      prometheus.Counter
	discoveries *prometheus.CounterVec
}

func newOwnMetrics(reg prometheus.Registerer) (*ownMetrics, error) {
	m := &ownMetrics{
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callstream_producer_owned_orgs", Help: "Organizations this producer polls now (its share when several producers run).",
		}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callstream_producer_rebalances_total", Help: "Assignments of organizations this producer received from the producers' consumer group.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callstream_producer_fenced_batches_total", Help: "Batches not published because the coordinator no longer confirmed this producer's assignment.",
		}),
		discoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_discoveries_total", Help: "Reads of the organizations endpoint after the first, by result: changed, unchanged, empty, error.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.owned, m.rebalances, m.fenced, m.discoveries} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("producer: metrics already registered on this registry: use one registry per producer")
			}
			return nil, err
		}
	}
	return m, nil
}
