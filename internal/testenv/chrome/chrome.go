// Package chrome starts the headless Chromium that the browser tests drive (the status page in
// admin, RabbitMQ's management UI through amqplb in e2e): one profile per test, kept off every
// network but loopback, its page errors failing the test. Tests only.
package chrome

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Path returns the path of a Chromium to drive (AMQPLB_CHROMIUM, else the first of the usual
// names on PATH). Without one the test is skipped, or fails when AMQPLB_REQUIRE_BROKERS=1 (CI,
// where scripts/install-test-deps.sh installs it).
func Path(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AMQPLB_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("AMQPLB_REQUIRE_BROKERS") == "1" {
		t.Fatal("chromium not found (apt-get install chromium, or run scripts/install-test-deps.sh)")
	}
	t.Skip("chromium not found; install it to run the browser tests")
	return ""
}

// Options tune Tab.
type Options struct {
	// Timeout bounds the browser's whole life; 0 means 90 s.
	Timeout time.Duration
	// ConsoleErrors fails the test on the page's console errors too (failed requests aside),
	// not only on its uncaught exceptions: for pages of our own, not for a broker's.
	ConsoleErrors bool
}

// Tab starts a headless Chromium with a fresh profile that stays off the network (no
// background fetches, no QUIC, no name resolution but loopback) and returns a tab's context.
// The browser is gone, and the page's errors reported as test errors, when the test ends.
func Tab(t testing.TB, o Options) context.Context {
	t.Helper()
	path := Path(t)
	profile := t.TempDir() // before the cleanups below, so it is removed after the browser exits
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // as root, Chromium refuses to start with its sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1360, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("force-color-profile", "srgb"),
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)

	var mu sync.Mutex
	var pageErrors []string
	var wg sync.WaitGroup
	exceptions := chromedp.Events(bctx, runtime.ExceptionThrown)
	wg.Go(func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			text := "exception: " + ev.ExceptionDetails.Text
			if e := ev.ExceptionDetails.Exception; e != nil {
				text += " " + e.Description
			}
			mu.Lock()
			pageErrors = append(pageErrors, text)
			mu.Unlock()
		}
	})
	if o.ConsoleErrors {
		// Failed requests ("network" entries: a 401 before a token, a test's 503) are expected.
		entries := chromedp.Events(bctx, cdplog.EntryAdded)
		wg.Go(func() {
			for ev, err := range entries {
				if err != nil {
					return
				}
				if e := ev.Entry; e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
					mu.Lock()
					pageErrors = append(pageErrors, string(e.Source)+": "+e.Text)
					mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range pageErrors {
			t.Errorf("page error: %s", e)
		}
	})
	return bctx
}

// Artifact writes data (a screenshot) to AMQPLB_ARTIFACTS, which CI keeps, or to the test's
// temporary directory, and logs where.
func Artifact(t testing.TB, name string, data []byte) {
	t.Helper()
	dir := os.Getenv("AMQPLB_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s", p)
}
