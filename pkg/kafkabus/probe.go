package kafkabus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/segmentio/kafka-go"
)

// Steps of connecting to a broker, as ConnectError names them.
const (
	StepConnect  = "connect"  // TCP: refused, unreachable, timed out
	StepTLS      = "tls"      // the TLS handshake or the broker's certificate
	StepSASL     = "sasl"     // SASL authentication
	StepMetadata = "metadata" // connected, but the cluster did not answer
)

// ConnectError says which step of reaching a broker failed, so an operator
// can tell a broker that is down from a certificate or a password problem.
// It never holds the SASL password.
type ConnectError struct {
	Broker string
	Step   string
	Err    error
}

func (e *ConnectError) Error() string {
	what := map[string]string{
		StepConnect: "cannot connect", StepTLS: "TLS handshake failed", StepSASL: "SASL authentication failed",
		StepMetadata: "no metadata answer",
	}[e.Step]
	return fmt.Sprintf("kafka broker %s: %s: %v", e.Broker, what, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Probe connects to each broker as every client of this Config would (TCP,
// then TLS and SASL when configured) and asks for the cluster's metadata.
// It returns nil as soon as one broker answers, else the failure of the
// last one as a *ConnectError.
func Probe(ctx context.Context, cfg Config) error {
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	var last error
	for _, b := range cfg.Brokers {
		if last = probeOne(ctx, dialer, b); last == nil {
			return nil
		}
	}
	return last
}

func probeOne(ctx context.Context, dialer *kafka.Dialer, broker string) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	conn, err := dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return &ConnectError{Broker: broker, Step: dialStep(err), Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Brokers(); err != nil {
		return &ConnectError{Broker: broker, Step: StepMetadata, Err: err}
	}
	return nil
}

// dialStep tells which step of kafka-go's dial (TCP, TLS, SASL) failed.
func dialStep(err error) string {
	var (
		rh      tls.RecordHeaderError
		alert   tls.AlertError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		kerr    kafka.Error
	)
	switch {
	case errors.As(err, &rh), errors.As(err, &alert), errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		return StepTLS
	case errors.As(err, &kerr) && (kerr == kafka.SASLAuthenticationFailed || kerr == kafka.UnsupportedSASLMechanism ||
		kerr == kafka.IllegalSASLState):
		return StepSASL
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return StepConnect
	}
	// kafka-go wraps some handshake failures in plain text.
	switch s := strings.ToLower(err.Error()); {
	case strings.Contains(s, "tls"), strings.Contains(s, "x509"), strings.Contains(s, "certificate"):
		return StepTLS
	case strings.Contains(s, "sasl"):
		return StepSASL
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return StepConnect
	}
	return StepConnect
}
