package kafkabus

import (
	"strings"
	"testing"

	"github.com/callstream/callstream/pkg/config"
)

const testPassword = "s3cr3t-Pässw0rd"

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Brokers = []string{"127.0.0.1:9092"}
		c.SASL.Password = testPassword
		c.SASL.Username = "svc"
		return c
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; empty = valid
	}{
		{"plain", func(c *Config) { c.SASL.Mechanism = "plain" }, ""},
		{"scram-sha-256 any case", func(c *Config) { c.SASL.Mechanism = "SCRAM-SHA-256" }, ""},
		{"scram-sha-512", func(c *Config) { c.SASL.Mechanism = "scram-sha-512" }, ""},
		{"unknown mechanism", func(c *Config) { c.SASL.Mechanism = "gssapi" }, `unknown SASL mechanism "gssapi"`},
		{"credentials without mechanism", func(c *Config) {}, "sasl.mechanism is empty"},
		{"mechanism without user", func(c *Config) { c.SASL.Mechanism = "plain"; c.SASL.Username = "" }, "needs a username"},
		{"no brokers", func(c *Config) { c.SASL = SASLConfig{}; c.Brokers = nil }, "no brokers"},
		{"blank broker", func(c *Config) { c.SASL = SASLConfig{}; c.Brokers = []string{"a:1", " "} }, "empty broker"},
		{"tls files without enable", func(c *Config) { c.SASL = SASLConfig{}; c.TLS.CAFile = "/x.pem" }, "tls.enable is false"},
		{"tls missing CA file", func(c *Config) {
			c.SASL.Mechanism = "plain"
			c.TLS = TLSConfig{Enable: true, CAFile: "/nonexistent/ca.pem"}
		}, "read TLS CA file"},
		{"tls cert without key", func(c *Config) {
			c.SASL.Mechanism = "plain"
			c.TLS = TLSConfig{Enable: true, CertFile: "/x.pem"}
		}, "both cert_file and key_file"},
		{"scram password SASLprep rejects", func(c *Config) {
			c.SASL.Mechanism = "scram-sha-256"
			c.SASL.Password = "s3cr3t\u0007bell"
		}, "not valid UTF-8 SASLprep"},
		{"tls with system roots", func(c *Config) { c.SASL.Mechanism = "plain"; c.TLS = TLSConfig{Enable: true} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := c.Dialer(); err != nil {
					t.Fatalf("Dialer: %v", err)
				}
				if _, err := c.Transport(); err != nil {
					t.Fatalf("Transport: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error leaks the password: %v", err)
			}
			for _, f := range []func() error{
				func() error { _, err := c.Dialer(); return err },
				func() error { _, err := c.Transport(); return err },
				func() error { _, err := c.Client(); return err },
			} {
				if err := f(); err == nil || strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("constructor error = %v, want an error without the password", err)
				}
			}
		})
	}
}

func TestConfigBuildsSecuredPieces(t *testing.T) {
	c := DefaultConfig()
	c.Brokers = []string{"127.0.0.1:9092"}
	c.ClientID = "cs-test"
	c.TLS = TLSConfig{Enable: true, InsecureSkipVerify: true}
	c.SASL = SASLConfig{Mechanism: "scram-sha-512", Username: "svc", Password: testPassword}
	d, err := c.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if d.TLS == nil || !d.TLS.InsecureSkipVerify || d.SASLMechanism == nil || d.SASLMechanism.Name() != "SCRAM-SHA-512" || d.ClientID != "cs-test" {
		t.Fatalf("dialer not secured as configured: tls=%v sasl=%v client=%q", d.TLS, d.SASLMechanism, d.ClientID)
	}
	tr, err := c.Transport()
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLS == nil || tr.SASL == nil || tr.SASL.Name() != "SCRAM-SHA-512" {
		t.Fatalf("transport not secured as configured: tls=%v sasl=%v", tr.TLS, tr.SASL)
	}
	c.SASL.Mechanism = "plain"
	c.TLS = TLSConfig{}
	tr, err = c.Transport()
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLS != nil || tr.SASL == nil || tr.SASL.Name() != "PLAIN" {
		t.Fatalf("transport = tls %v sasl %v, want no TLS and PLAIN", tr.TLS, tr.SASL)
	}
}

// TestConfigTags checks the contract with pkg/config: KAFKA_BROKERS sets the
// brokers, and printing the config masks the SASL password.
func TestConfigTags(t *testing.T) {
	pc := DefaultPublisherConfig()
	env := map[string]string{"KAFKA_BROKERS": "k1:9092, k2:9092", "KAFKA_SASL_PASSWORD": testPassword, "KAFKA_SASL_MECHANISM": "plain"}
	if err := config.ApplyEnv(&pc, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pc.Brokers, ","); got != "k1:9092,k2:9092" {
		t.Fatalf("brokers = %q", got)
	}
	out, err := config.Print(&pc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cr3t") || !strings.Contains(out, "kafka.sasl.password") {
		t.Fatalf("printed config leaks or lacks the password field:\n%s", out)
	}

	sc := DefaultSubscriberConfig()
	if err := config.ApplyEnv(&sc, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	out, err = config.Print(&sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kafka.brokers:", "consumer_group:", "max_in_flight: 1", "commit_interval: 0s"} {
		if !strings.Contains(out, want) {
			t.Fatalf("printed subscriber config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cr3t") {
		t.Fatalf("printed subscriber config leaks the password:\n%s", out)
	}
}

func TestPublisherAndSubscriberConfigErrors(t *testing.T) {
	if _, err := NewPublisher(DefaultPublisherConfig(), nil); err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Fatalf("NewPublisher without brokers: %v", err)
	}
	pc := DefaultPublisherConfig()
	pc.Brokers = []string{"127.0.0.1:9092"}
	pc.Compression = "brotli"
	if _, err := NewPublisher(pc, nil); err == nil || !strings.Contains(err.Error(), "unknown compression") {
		t.Fatalf("NewPublisher with bad compression: %v", err)
	}
	for _, name := range []string{"none", "gzip", "snappy", "lz4", "zstd", ""} {
		pc.Compression = name
		p, err := NewPublisher(pc, nil)
		if err != nil {
			t.Fatalf("compression %q: %v", name, err)
		}
		_ = p.Close()
	}
	sc := DefaultSubscriberConfig()
	sc.Brokers = []string{"127.0.0.1:9092"}
	sc.InitialOffset = "middle"
	if _, err := NewSubscriber(sc, nil); err == nil || !strings.Contains(err.Error(), "initial_offset") {
		t.Fatalf("NewSubscriber with bad initial offset: %v", err)
	}
	sc = DefaultSubscriberConfig()
	sc.Brokers = []string{"127.0.0.1:9092"}
	sc.SASL = SASLConfig{Mechanism: "oauth", Username: "u", Password: testPassword}
	_, err := NewSubscriber(sc, nil)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("NewSubscriber with bad mechanism: %v", err)
	}
}
