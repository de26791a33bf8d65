// Package deploy holds no Go code of its own: these tests check that the
// deployment files (docker-compose.yml, the kustomize base, the Grafana
// dashboard and the Prometheus rules) agree with the code they deploy.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/callstream/callstream/pkg/testenv"
)

const root = ".."

// callstreamBinary builds the binary once per test run.
func callstreamBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callstream")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/callstream")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build callstream: %v\n%s", err, out)
	}
	return bin
}

// checkArgs runs the binary with the deployment's arguments and -h: the flag
// parser rejects an unknown flag or command before it reaches -h.
func checkArgs(t *testing.T, bin, where string, args []string) {
	t.Helper()
	if len(args) == 0 {
		return
	}
	cmd := exec.Command(bin, append(append([]string{}, args...), "-h")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s: `callstream %s` is not accepted by the binary: %v\n%s", where, strings.Join(args, " "), err, out)
	}
}

func documentedEnv(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(string(doc), -1) {
		out[m[1]] = true
	}
	return out
}

func checkEnv(t *testing.T, where string, env map[string]string, known map[string]bool) {
	t.Helper()
	for k := range env {
		if strings.HasPrefix(k, "CALLSTREAM_") || strings.HasPrefix(k, "UNPOD_") || k == "KAFKA_BROKERS" {
			if !known[k] {
				t.Errorf("%s sets %s, which docs/configuration.md does not list (a typo, or an option that does not exist)", where, k)
			}
		}
	}
}

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]any    `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

func TestComposeFileIsValid(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(data, &cf); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for _, want := range []string{"kafka", "postgres", "simulator", "producer", "consumers", "webhook-receiver"} {
		if _, ok := cf.Services[want]; !ok {
			t.Errorf("docker-compose.yml lacks the %s service", want)
		}
	}
	bin := callstreamBinary(t)
	known := documentedEnv(t)
	for name, s := range cf.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		for dep := range s.DependsOn {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not defined", name, dep)
			}
		}
		if s.Image == "callstream:local" {
			checkArgs(t, bin, "docker-compose.yml service "+name, s.Command)
			checkEnv(t, "docker-compose.yml service "+name, s.Environment, known)
			if s.Healthcheck == nil {
				t.Errorf("service %s has no health check", name)
			}
		}
	}
	out, err := exec.Command(bin, "config", "validate", "--config", filepath.Join(root, "deploy", "compose", "callstream.yaml")).CombinedOutput()
	if err != nil {
		t.Errorf("deploy/compose/callstream.yaml is not a valid configuration: %v\n%s", err, out)
	}
	// Where a Docker client with compose is available, let it judge too.
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd := exec.Command("docker", "compose", "-f", "docker-compose.yml", "config", "-q")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker compose config: %v\n%s", err, out)
		}
	}
}

// kustomize finds the kustomize binary: $KUSTOMIZE, PATH, or the cache that
// scripts/test.sh installs it into.
func kustomize(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("KUSTOMIZE")}
	if p, err := exec.LookPath("kustomize"); err == nil {
		candidates = append(candidates, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".cache", "callstream", "bin", "kustomize"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	msg := "kustomize not found (scripts/test.sh installs it: go install sigs.k8s.io/kustomize/kustomize/v5)"
	if testenv.Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		MinAvailable *int `yaml:"minAvailable"`
		Template     struct {
			Spec struct {
				Containers []struct {
					Name      string   `yaml:"name"`
					Image     string   `yaml:"image"`
					Args      []string `yaml:"args"`
					Resources struct {
						Requests map[string]string `yaml:"requests"`
					} `yaml:"resources"`
					LivenessProbe  *probe `yaml:"livenessProbe"`
					ReadinessProbe *probe `yaml:"readinessProbe"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

func TestKustomizeRendersKubernetesObjects(t *testing.T) {
	bin := kustomize(t)
	out, err := exec.Command(bin, "build", filepath.Join(root, "deploy", "k8s", "base")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kustomize build: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("kustomize build: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	kinds := map[string]int{}
	pdbFor := map[string]bool{} // components a PodDisruptionBudget keeps available
	cs := callstreamBinary(t)
	known := documentedEnv(t)
	for {
		var o k8sObject
		if err := dec.Decode(&o); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("rendered manifests do not parse: %v", err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("object without apiVersion, kind or name: %+v", o)
		}
		kinds[o.Kind]++
		if o.Kind == "ConfigMap" {
			checkEnv(t, "ConfigMap "+o.Metadata.Name, o.Data, known)
		}
		if o.Kind == "PodDisruptionBudget" && o.Spec.MinAvailable != nil && *o.Spec.MinAvailable >= 1 {
			pdbFor[o.Spec.Selector.MatchLabels["app.kubernetes.io/component"]] = true
		}
		if o.Kind != "Deployment" {
			continue
		}
		if o.Metadata.Name == "callstream-producer" {
			// The producers share the organizations through their
			// consumer group: several replicas, replaced one at a time.
			if o.Spec.Replicas == nil || *o.Spec.Replicas < 2 {
				t.Errorf("the producer Deployment runs %v replicas, want at least 2 (one takes over from the other)", o.Spec.Replicas)
			}
			if o.Spec.Strategy.Type != "RollingUpdate" {
				t.Errorf("the producer Deployment's strategy is %q, want RollingUpdate", o.Spec.Strategy.Type)
			}
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			where := fmt.Sprintf("Deployment %s container %s", o.Metadata.Name, c.Name)
			// Alerting windows span every partition: one group member only.
			if strings.Contains(strings.Join(c.Args, " "), "alerting") && (o.Spec.Replicas == nil || *o.Spec.Replicas != 1) {
				t.Errorf("%s runs alerting with more than one replica", where)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: liveness probe must GET /healthz", where)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: readiness probe must GET /readyz", where)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
				t.Errorf("%s: needs cpu and memory requests", where)
			}
			checkArgs(t, cs, where, c.Args)
		}
	}
	for _, want := range []string{"Deployment", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"} {
		if kinds[want] == 0 {
			t.Errorf("rendered manifests have no %s (got %v)", want, kinds)
		}
	}
	if kinds["Deployment"] < 2 {
		t.Errorf("want a producer and a consumers Deployment, got %d", kinds["Deployment"])
	}
	for _, c := range []string{"producer", "consumers"} {
		if !pdbFor[c] {
			t.Errorf("no PodDisruptionBudget keeps a %s pod available", c)
		}
	}
}

var metricName = regexp.MustCompile(`\bcallstream_[a-z0-9_]+`)

// codeMetrics lists the metric names the Go code defines (Name or
// Namespace+Subsystem+Name written out as a "callstream_..." string).
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() && (info.Name() == ".git" || info.Name() == ".kafka") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range metricName.FindAllString(string(data), -1) {
			out[m] = true
		}
		// Names built from Namespace/Subsystem/Name options: every
		// combination within one file (an over-approximation, which is
		// enough to catch a dashboard naming a metric nobody defines).
		text := string(data)
		subs := append([]string{""}, optionValues(text, "Subsystem")...)
		for _, ns := range optionValues(text, "Namespace") {
			for _, sub := range subs {
				for _, n := range append(optionValues(text, "Name"), quotedNames(text)...) {
					parts := []string{ns}
					if sub != "" {
						parts = append(parts, sub)
					}
					out[strings.Join(append(parts, n), "_")] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func optionValues(text, option string) []string {
	var out []string
	re := regexp.MustCompile(option + `:\s*"([a-z0-9_]+)"`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// quotedNames finds metric-like names passed to helper constructors, such
// as counter("rows_written_total", ...).
func quotedNames(text string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"([a-z0-9_]+_(?:total|seconds|bytes))"`).FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// usedMetrics finds the metric names an expression refers to, without the
// suffixes Prometheus adds to histograms and counters.
func usedMetrics(expr string) []string {
	var out []string
	for _, m := range metricName.FindAllString(expr, -1) {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			m = strings.TrimSuffix(m, suf)
		}
		out = append(out, m)
	}
	return out
}

func checkMetricsExist(t *testing.T, where string, exprs []string) {
	t.Helper()
	defined := codeMetrics(t)
	missing := map[string]bool{}
	for _, e := range exprs {
		for _, m := range usedMetrics(e) {
			if !defined[m] && !defined[m+"_total"] && !defined[strings.TrimSuffix(m, "_total")] {
				missing[m] = true
			}
		}
	}
	var names []string
	for m := range missing {
		names = append(names, m)
	}
	sort.Strings(names)
	if len(names) > 0 {
		t.Errorf("%s uses metrics the code does not define: %s", where, strings.Join(names, ", "))
	}
}

func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "callstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 6 {
		t.Fatalf("dashboard has %d queries, want panels for every stage", len(exprs))
	}
	checkMetricsExist(t, "deploy/grafana/callstream.json", exprs)
}

func TestPrometheusRulesUseRealMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "callstream-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
				For   string `yaml:"for"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("rules do not parse: %v", err)
	}
	var exprs, alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s has a rule without alert name or expr", g.Name)
			}
			exprs = append(exprs, r.Expr)
			alerts = append(alerts, r.Alert)
		}
	}
	for _, want := range []string{"CallstreamProducerStalled", "CallstreamConsumerLagGrowing", "CallstreamDLQReceiving", "CallstreamAuditMissingCalls"} {
		if !strings.Contains(strings.Join(alerts, " "), want) {
			t.Errorf("rules lack %s", want)
		}
	}
	checkMetricsExist(t, "deploy/prometheus/callstream-rules.yaml", exprs)
}
