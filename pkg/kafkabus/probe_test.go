package kafkabus_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// TestProbeNamesTheStep: a broker that is down, a certificate the client
// does not trust and credentials the broker does not take fail at
// different steps, and the error says which; a healthy broker answers.
func TestProbeNamesTheStep(t *testing.T) {
	brokers := testenv.Kafka(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	untrusted := kafkabus.NewUntrustedTLSBroker(t)

	tests := []struct {
		name string
		cfg  func(c *kafkabus.Config)
		step string // "" means Probe succeeds
	}{
		{"healthy broker", func(c *kafkabus.Config) { c.Brokers = brokers }, ""},
		{"nothing listening", func(c *kafkabus.Config) { c.Brokers = []string{closed} }, kafkabus.StepConnect},
		{"untrusted certificate", func(c *kafkabus.Config) {
			c.Brokers = []string{untrusted.Addr}
			c.TLS = kafkabus.TLSConfig{Enable: true, CertFile: untrusted.CertFile, KeyFile: untrusted.KeyFile}
		}, kafkabus.StepTLS},
		{"broker without SASL", func(c *kafkabus.Config) {
			c.Brokers = brokers
			c.SASL = kafkabus.SASLConfig{Mechanism: kafkabus.SASLPlain, Username: "svc", Password: kafkabus.TestPassword}
		}, kafkabus.StepSASL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kafkabus.DefaultConfig()
			c.DialTimeout = 3 * time.Second
			tt.cfg(&c)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := kafkabus.Probe(ctx, c)
			if tt.step == "" {
				if err != nil {
					t.Fatalf("Probe = %v", err)
				}
				return
			}
			var ce *kafkabus.ConnectError
			if !errors.As(err, &ce) || ce.Step != tt.step {
				t.Fatalf("Probe = %v, want a failure at step %s", err, tt.step)
			}
			if strings.Contains(err.Error(), kafkabus.TestPassword) {
				t.Fatalf("the error holds the password: %v", err)
			}
		})
	}
}
