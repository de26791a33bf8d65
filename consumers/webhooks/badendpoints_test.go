package webhooks

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// badEndpoints are the isolation test's hanging and failing receivers,
// served by a child process: in production a bad endpoint's server runs
// elsewhere, so its work must not take the two cores of this machine from
// the plug-in whose isolation is measured.
type badEndpoints struct{ hanging, failing string }

const badEndpointsEnv = "CALLSTREAM_TEST_BAD_ENDPOINTS"

// startBadEndpoints starts the child and returns its endpoints' URLs; the
// child is killed when the test ends, and exits by itself if this process
// dies first (its stdin closes).
func startBadEndpoints(t *testing.T) *badEndpoints {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadEndpointsChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), badEndpointsEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the bad endpoints' process: %v", err)
	}
	t.Cleanup(func() {
		// The child holds no state worth a clean exit.
		_ = cmd.Process.Kill()
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	var b badEndpoints
	if _, serr := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "endpoints ")), "%s %s", &b.hanging, &b.failing); err != nil || serr != nil {
		t.Fatalf("the bad endpoints' process said %q (%v, %v)", line, err, serr)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return &b
}

// TestBadEndpointsChild serves a hanging and a failing endpoint until its
// stdin closes; it does nothing unless startBadEndpoints started it.
func TestBadEndpointsChild(t *testing.T) {
	if os.Getenv(badEndpointsEnv) == "" {
		t.Skip("started by TestIsolationFromBadEndpoints only")
	}
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the sender gives up
	}))
	defer func() {
		hanging.CloseClientConnections() // its requests would hold Close up
		hanging.Close()
	}()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer failing.Close()
	fmt.Printf("endpoints %s %s\n", hanging.URL, failing.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
}
