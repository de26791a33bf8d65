package telemetry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOrReuse registers c on reg and returns it, or returns the
// collector of the same kind already registered under the same name, so
// that several components (or one reopened within a process, as tests do)
// can share a registry and count in the same series. A nil reg registers
// nothing. Any other registration error is returned with c.
func RegisterOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Registrar registers a component's collectors with RegisterOrReuse and
// keeps the first error, so that a constructor registers everything and
// checks once:
//
//	r := telemetry.NewRegistrar(reg)
//	telemetry.Reuse(r, &m.requests)
//	telemetry.Reuse(r, &m.latency)
//	if err := r.Err(); err != nil { ... }
type Registrar struct {
	reg prometheus.Registerer
	err error
}

// NewRegistrar returns a Registrar on reg; a nil reg registers nothing.
func NewRegistrar(reg prometheus.Registerer) *Registrar { return &Registrar{reg: reg} }

// Reuse registers *c, or replaces it with the collector already registered
// under its name.
func Reuse[C prometheus.Collector](r *Registrar, c *C) {
	v, err := RegisterOrReuse(r.reg, *c)
	if err != nil && r.err == nil {
		r.err = err
	}
	*c = v
}

// Err returns the first registration error.
func (r *Registrar) Err() error { return r.err }
