package kafkabus

import "testing"

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
