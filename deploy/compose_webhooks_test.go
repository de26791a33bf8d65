package deploy

import (
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeWebhooks is the part of a callstream configuration this test reads.
type composeWebhooks struct {
	Webhooks struct {
		AllowPrivate bool `yaml:"allow_private"`
		Endpoints    []struct {
			Name    string   `yaml:"name"`
			URL     string   `yaml:"url"`
			Secrets []string `yaml:"secrets"`
		} `yaml:"endpoints"`
	} `yaml:"webhooks"`
}

// TestComposeWebhookReceiverGetsEvents: the compose stack's webhook
// receiver is sent the events. The consumers service runs the webhooks
// plug-in with the configuration file it mounts, and that file subscribes
// the receiver service, at the port it listens on, with a signing secret,
// and allows private addresses (a compose network's are RFC 1918, which
// webhooks refuses by default). Any of these missing and the receiver
// receives nothing while every service is up.
func TestComposeWebhookReceiverGetsEvents(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	const receiver = "webhook-receiver"
	rs, ok := cf.Services[receiver]
	if !ok {
		t.Fatalf("docker-compose.yml lacks the %s service", receiver)
	}
	port := rs.Environment["HTTP_PORT"]
	if port == "" {
		t.Fatalf("service %s sets no HTTP_PORT: the port it listens on is unknown", receiver)
	}
	cs, ok := cf.Services["consumers"]
	if !ok {
		t.Fatal("docker-compose.yml lacks the consumers service")
	}
	cmd := cs.Command
	if i := slices.Index(cmd, "--only"); i >= 0 && (i+1 >= len(cmd) || !slices.Contains(strings.Split(cmd[i+1], ","), "webhooks")) {
		t.Errorf("the consumers service runs %v: not the webhooks plug-in", cmd)
	}
	i := slices.Index(cmd, "--config")
	if i < 0 || i+1 >= len(cmd) {
		t.Fatalf("the consumers service runs %v: no --config, so no webhook endpoint", cmd)
	}
	inContainer := cmd[i+1]
	// The host file mounted at that path.
	var hostFile string
	for _, v := range cs.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == inContainer {
			hostFile = parts[0]
		}
	}
	if hostFile == "" {
		t.Fatalf("the consumers service mounts nothing at %s (volumes %v)", inContainer, cs.Volumes)
	}
	data, err = os.ReadFile(filepath.Join(root, hostFile))
	if err != nil {
		t.Fatalf("the file mounted at %s: %v", inContainer, err)
	}
	var cfg composeWebhooks
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("%s does not parse: %v", hostFile, err)
	}
	found := false
	for _, ep := range cfg.Webhooks.Endpoints {
		u, err := url.Parse(ep.URL)
		if err != nil || u.Hostname() != receiver {
			continue
		}
		found = true
		if u.Scheme != "http" || u.Port() != port {
			t.Errorf("endpoint %s: %s, but %s listens on plain http port %s", ep.Name, ep.URL, receiver, port)
		}
		if len(ep.Secrets) == 0 {
			t.Errorf("endpoint %s has no signing secret", ep.Name)
		}
		for j, s := range ep.Secrets {
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
			if !strings.HasPrefix(s, "whsec_") || err != nil || len(key) < 24 {
				t.Errorf("endpoint %s: secret %d is not whsec_ and base64 of at least 24 bytes", ep.Name, j)
			}
		}
	}
	if !found {
		t.Fatalf("%s subscribes no webhooks endpoint at the %s service: it receives nothing", hostFile, receiver)
	}
	if !cfg.Webhooks.AllowPrivate {
		t.Errorf("%s: webhooks.allow_private is not set, so the receiver's compose network address (private) is refused", hostFile)
	}
}
