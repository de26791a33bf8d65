package kafkabus

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

// Test helpers shared with the external tests of this package.

// TestBroker is a TLS listener whose certificate comes from a throwaway CA,
// with the client certificate and key files of that CA.
type TestBroker struct{ Addr, CertFile, KeyFile string }

// NewUntrustedTLSBroker starts a TLS listener whose CA the system does not
// trust.
func NewUntrustedTLSBroker(t *testing.T) TestBroker {
	p := newTestPKI(t)
	addr, _ := p.tlsBroker(t)
	return TestBroker{Addr: addr, CertFile: p.certFile, KeyFile: p.keyFile}
}

const TestPassword = testPassword

// WrapTransport puts wrap around the publisher's kafka-go transport, to
// inject faults between the writer and a real broker.
func (p *Publisher) WrapTransport(wrap func(kafka.RoundTripper) kafka.RoundTripper) {
	p.writer.Transport = wrap(p.writer.Transport)
}
