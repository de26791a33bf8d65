package kafkabus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string // CA, client cert and key
	serverCert                tls.Certificate
	caPool                    *x509.CertPool
	clientCommonName          string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), clientCommonName: "callstream-client"}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := issue(2, "broker", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := issue(3, p.clientCommonName, x509.ExtKeyUsageClientAuth, nil)

	write := func(name, typ string, der []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyDER, _ := x509.MarshalECPrivateKey(cliKey)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	p.certFile = write("client.pem", "CERTIFICATE", cliDER)
	p.keyFile = write("client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// tlsBroker accepts one connection, completes a TLS handshake that
// requires a client certificate from the test CA, and reports the client's
// common name.
func (p *testPKI) tlsBroker(t *testing.T) (addr string, clientCN <-chan string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			out <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			out <- "handshake: " + err.Error()
			return
		}
		certs := tc.ConnectionState().PeerCertificates
		if len(certs) == 0 {
			out <- "no client certificate"
			return
		}
		out <- certs[0].Subject.CommonName
	}()
	return ln.Addr().String(), out
}

// TestDialerSpeaksMutualTLS dials a TLS listener that only accepts clients
// with a certificate from the test CA, using the CA file to verify it: the
// handshake succeeds only if both files are wired into the Dialer.
func TestDialerSpeaksMutualTLS(t *testing.T) {
	p := newTestPKI(t)
	c := DefaultConfig()
	c.DialTimeout = 2 * time.Second
	c.TLS = TLSConfig{Enable: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dials := map[string]func(addr string){
		"dialer": func(addr string) {
			d, err := c.Dialer()
			if err != nil {
				t.Fatal(err)
			}
			if conn, err := d.DialContext(ctx, "tcp", addr); err == nil {
				conn.Close()
			}
		},
		"transport": func(addr string) {
			tr, err := c.Transport()
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			client := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 2 * time.Second}
			_, _ = client.Metadata(ctx, &kafka.MetadataRequest{})
		},
	}
	for name, dial := range dials {
		addr, cn := p.tlsBroker(t)
		c.Brokers = []string{addr}
		dial(addr)
		select {
		case got := <-cn:
			if got != p.clientCommonName {
				t.Fatalf("%s: broker side of the TLS handshake: %s", name, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no TLS handshake reached the broker", name)
		}
	}

	// Without the CA file the system roots reject the test broker.
	c.TLS.CAFile = ""
	addr2, _ := p.tlsBroker(t)
	c.Brokers = []string{addr2}
	d, err := c.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialContext(ctx, "tcp", addr2)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial without the CA: %v, want a certificate verification error", err)
	}
}

// TestSASLMechanismsCarryCredentials starts each configured mechanism and
// checks its first message names the user (and, for PLAIN, the password).
func TestSASLMechanismsCarryCredentials(t *testing.T) {
	tests := []struct {
		mech, name, wantFirst string
	}{
		{"plain", "PLAIN", "\x00svc\x00" + testPassword},
		{"scram-sha-256", "SCRAM-SHA-256", "n,,n=svc,r="},
		{"scram-sha-512", "SCRAM-SHA-512", "n,,n=svc,r="},
	}
	for _, tt := range tests {
		t.Run(tt.mech, func(t *testing.T) {
			c := DefaultConfig()
			c.Brokers = []string{"127.0.0.1:9092"}
			c.SASL = SASLConfig{Mechanism: tt.mech, Username: "svc", Password: testPassword}
			d, err := c.Dialer()
			if err != nil {
				t.Fatal(err)
			}
			if d.SASLMechanism.Name() != tt.name {
				t.Fatalf("mechanism %s", d.SASLMechanism.Name())
			}
			_, first, err := d.SASLMechanism.Start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(first), tt.wantFirst) {
				t.Fatalf("first SASL message %q, want prefix %q", first, tt.wantFirst)
			}
		})
	}
}
