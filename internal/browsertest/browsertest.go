// Package browsertest gives tests a real browser: a headless Chromium started for the
// test with a fresh profile and driven through the DevTools protocol with chromedp. Where
// no Chromium is installed the test is skipped with a message saying how to get one; with
// ERPRESYNC_REQUIRE_BROWSER=1 (set by .ci/run) a missing browser fails it instead.
//
//	ctx := browsertest.New(t) // a chromedp context; the browser exits at the test's end
//	err := chromedp.Run(ctx, chromedp.Navigate(url), chromedp.Text("h1", &title))
package browsertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// RequireEnv names the environment variable that turns a missing browser into a failure.
const RequireEnv = "ERPRESYNC_REQUIRE_BROWSER"

// candidates are the names Chromium goes by; Debian's package installs /usr/bin/chromium.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the path of an installed Chromium.
func Find() (string, error) {
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found (looked for " + strings.Join(candidates, ", ") + " on PATH); on Debian: apt-get install -y chromium")
}

// Flags are the switches Chromium is started with: headless, and nothing that reaches
// out to the network on its own (on a machine without internet such connections stall
// start-up), plus a fresh profile directory each time.
var Flags = []chromedp.ExecAllocatorOption{
	chromedp.Headless,
	chromedp.NoSandbox,
	chromedp.DisableGPU,
	chromedp.NoFirstRun,
	chromedp.Flag("disable-quic", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("no-default-browser-check", true),
	chromedp.Flag("disable-extensions", true),
	chromedp.Flag("disable-dev-shm-usage", true),
	chromedp.WindowSize(1400, 1000),
}

// New starts a browser for t and returns a chromedp context for its first tab. Bound each
// action with a context.WithTimeout derived from it (a deadline on this context itself
// would stop the browser). The browser and its profile go at the end of the test.
func New(t testing.TB) context.Context {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("browsertest: %v (%s=1 requires a browser)", err, RequireEnv)
		}
		t.Skipf("browsertest: %v; skipping the browser test", err)
	}
	opts := append([]chromedp.ExecAllocatorOption{chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir())}, Flags...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	// Start the browser now, so a browser that cannot start fails here, within a minute,
	// and not in the middle of the test's first action.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(time.Minute):
		err = errors.New("no answer within a minute")
	}
	if err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("browsertest: start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancelTab() // closes the tab and, being the first, the browser
		cancelAlloc()
	})
	return ctx
}

// BasicAuth makes the tab send HTTP basic-auth credentials with every request, as a
// browser does once a person has typed them into its login prompt.
func BasicAuth(user, pass string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": "Basic " + cred}})
		return chromedp.Void{}, err
	}
}

// Colours decodes a PNG and counts its distinct colours: a blank or failed page has one
// or two, a rendered one many.
func Colours(pngData []byte) (int, image.Rectangle, error) {
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		return 0, image.Rectangle{}, fmt.Errorf("browsertest: decode screenshot: %w", err)
	}
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen), b, nil
}
