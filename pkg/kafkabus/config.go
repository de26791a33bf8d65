package kafkabus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanism names accepted in SASLConfig.Mechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Config holds the connection settings shared by everything that talks to
// Kafka. Its methods hand out kafka-go pieces that carry the same TLS and SASL
// settings, so no caller secures a connection by hand.
type Config struct {
	Brokers     []string      `yaml:"brokers" env:"KAFKA_BROKERS" doc:"Kafka bootstrap brokers as host:port, comma-separated; empty means the in-process bus."`
	ClientID    string        `yaml:"client_id" env:"KAFKA_CLIENT_ID" doc:"Client id sent to the brokers, shown in broker logs and quotas."`
	DialTimeout time.Duration `yaml:"dial_timeout" doc:"How long to wait for a TCP+TLS+SASL connection to a broker."`
	TLS         TLSConfig     `yaml:"tls"`
	SASL        SASLConfig    `yaml:"sasl"`
}

// TLSConfig enables TLS towards the brokers.
type TLSConfig struct {
	Enable             bool   `yaml:"enable" env:"KAFKA_TLS_ENABLE" doc:"Connect to the brokers over TLS."`
	CAFile             string `yaml:"ca_file" env:"KAFKA_TLS_CA_FILE" doc:"PEM file of the CA that signed the brokers' certificates; empty uses the system roots."`
	CertFile           string `yaml:"cert_file" env:"KAFKA_TLS_CERT_FILE" doc:"PEM client certificate for mutual TLS."`
	KeyFile            string `yaml:"key_file" env:"KAFKA_TLS_KEY_FILE" doc:"PEM private key of the client certificate."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"Accept any broker certificate; for tests only."`
}

// SASLConfig authenticates to the brokers with SASL.
type SASLConfig struct {
	Mechanism string `yaml:"mechanism" env:"KAFKA_SASL_MECHANISM" doc:"SASL mechanism: plain, scram-sha-256 or scram-sha-512; empty disables SASL."`
	Username  string `yaml:"username" env:"KAFKA_SASL_USERNAME" doc:"SASL user name."`
	Password  string `yaml:"password" env:"KAFKA_SASL_PASSWORD" secret:"true" doc:"SASL password."`
}

// DefaultConfig returns a Config without brokers (DESIGN.md: no
// KAFKA_BROKERS means the in-process bus), TLS or SASL.
func DefaultConfig() Config {
	return Config{
		ClientID:    "callstream",
		DialTimeout: 10 * time.Second,
	}
}

// Validate reports the first setting that cannot work. It never includes the
// SASL password in its error.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafkabus: no brokers configured (set brokers or KAFKA_BROKERS)")
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return fmt.Errorf("kafkabus: empty broker address in %q", strings.Join(c.Brokers, ","))
		}
	}
	if _, err := c.saslMechanism(); err != nil {
		return err
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

func (c Config) dialTimeout() time.Duration {
	if c.DialTimeout > 0 {
		return c.DialTimeout
	}
	return 10 * time.Second
}

// tlsConfig returns nil when TLS is disabled.
func (c Config) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if !t.Enable {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
			return nil, errors.New("kafkabus: TLS files are configured but tls.enable is false")
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in for test clusters, documented as such
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafkabus: read TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafkabus: TLS CA file %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("kafkabus: TLS client certificate needs both cert_file and key_file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafkabus: load TLS client certificate %s: %w", t.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// saslMechanism returns nil when SASL is disabled. Errors name the mechanism
// and user, never the password.
func (c Config) saslMechanism() (sasl.Mechanism, error) {
	s := c.SASL
	mech := strings.ToLower(strings.TrimSpace(s.Mechanism))
	if mech == "" {
		if s.Username != "" || s.Password != "" {
			return nil, errors.New("kafkabus: SASL credentials are set but sasl.mechanism is empty (want plain, scram-sha-256 or scram-sha-512)")
		}
		return nil, nil
	}
	if s.Username == "" {
		return nil, fmt.Errorf("kafkabus: SASL mechanism %s needs a username", mech)
	}
	switch mech {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA256, SASLScramSHA512:
		algo := scram.SHA256
		if mech == SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// The underlying error comes from SASLprep of the credentials;
			// it is replaced so the password cannot leak through it.
			return nil, fmt.Errorf("kafkabus: SASL %s credentials for user %q are not valid UTF-8 SASLprep strings", mech, s.Username)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("kafkabus: unknown SASL mechanism %q (want plain, scram-sha-256 or scram-sha-512)", s.Mechanism)
	}
}

// Dialer returns a kafka-go Dialer with this Config's TLS and SASL settings,
// for Readers and direct connections.
func (c Config) Dialer() (*kafka.Dialer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, _ := c.tlsConfig()
	mech, _ := c.saslMechanism()
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       c.dialTimeout(),
		DualStack:     true,
		TLS:           tlsCfg,
		SASLMechanism: mech,
	}, nil
}

// Transport returns a kafka-go Transport with this Config's TLS and SASL
// settings, for Writers and Clients. Each call returns a new Transport with
// its own connection pool and metadata cache.
func (c Config) Transport() (*kafka.Transport, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, _ := c.tlsConfig()
	mech, _ := c.saslMechanism()
	return &kafka.Transport{
		ClientID:    c.ClientID,
		DialTimeout: c.dialTimeout(),
		TLS:         tlsCfg,
		SASL:        mech,
	}, nil
}

// Client returns a kafka-go Client for admin and offset requests, on its own
// Transport.
func (c Config) Client() (*kafka.Client, error) {
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{
		Addr:      kafka.TCP(c.Brokers...),
		Timeout:   30 * time.Second,
		Transport: tr,
	}, nil
}

// topicClient returns a Client whose Transport fetches metadata for topic
// only: on a cluster with thousands of topics a full metadata refresh is
// costly, and these short-lived clients need just the one.
func (c Config) topicClient(topic string) (*kafka.Client, error) {
	client, err := c.Client()
	if err != nil {
		return nil, err
	}
	client.Transport.(*kafka.Transport).MetadataTopics = []string{topic}
	return client, nil
}
