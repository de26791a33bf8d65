// Package browsertest drives the status page in a real headless Chromium
// (Debian's chromium package, which scripts/tools.sh installs) for tests.
//
// Like package testenv, it skips a test when Chromium cannot start, unless
// CALLSTREAM_INTEGRATION=1 is set (as `make test` and CI do), where that
// fails the test instead.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstream/callstream/pkg/testenv"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	// Ctx is the tab's chromedp context, for chromedp.Run.
	Ctx context.Context
}

// lockedBuffer collects Chromium's output for the failure message.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// execPath finds Chromium: $CHROMIUM, else chromium or chromium-browser on
// PATH.
func execPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium is not installed (scripts/tools.sh installs Debian's chromium package: apt-get install chromium)")
}

// New starts a headless Chromium with a fresh profile, stopped when the
// test ends. The flags keep it from reaching out to the network on its own
// (component updates, sync, QUIC probes), which on a closed network makes
// it stall.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := execPath()
	if err != nil {
		unavailable(t, err.Error())
	}
	out := &lockedBuffer{}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // as root in a container, the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1500),
		chromedp.CombinedOutput(out),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not have a timeout of its
	// own (that would stop the browser with it), so a watchdog cancels it.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(60 * time.Second):
		cancel()
		err = fmt.Errorf("no answer within 60 s")
	}
	if err != nil {
		unavailable(t, fmt.Sprintf("Chromium (%s) could not start: %v\n%s", path, err, out.String()))
	}
	return &Browser{Ctx: ctx}
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if testenv.Required() {
		t.Fatal("browser missing: " + msg)
	}
	t.Skip(msg + "; run `make test`, which installs it")
}

// Eval evaluates a JavaScript expression in the tab and decodes its value,
// failing the test on error. Each call is bounded by timeout.
func Eval[T any](t testing.TB, b *Browser, expr string, timeout time.Duration) T {
	t.Helper()
	v, err := TryEval[T](b, expr, timeout)
	if err != nil {
		t.Fatalf("evaluate %q: %v", abbrev(expr), err)
	}
	return v
}

// TryEval is Eval that returns the error.
func TryEval[T any](b *Browser, expr string, timeout time.Duration) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Navigate loads url in the tab.
func (b *Browser) Navigate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
}

// Screenshot saves a PNG of the whole page as a test artefact named name
// (see ArtifactDir) and returns its path.
func (b *Browser) Screenshot(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(ArtifactDir(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// ArtifactDir is where tests leave files for people to look at:
// $CALLSTREAM_ARTIFACTS, or test-artifacts/ at the module root (git-ignored).
func ArtifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CALLSTREAM_ARTIFACTS")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("artefact directory: %v", err)
		}
		dir = filepath.Join(root, "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artefact directory %s: %v", dir, err)
	}
	return dir
}

// moduleRoot is the nearest directory above the working directory (a test's
// package directory) holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
	}
}
