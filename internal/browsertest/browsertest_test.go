package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestColours(t *testing.T) {
	t.Parallel()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	n, b, err := Colours(buf.Bytes())
	if err != nil || n != 2 || b.Dx() != 4 {
		t.Errorf("Colours = %d, %v, %v; want 2 colours in 4x4", n, b, err)
	}
	if _, _, err := Colours([]byte("not a png")); err == nil {
		t.Error("Colours of garbage: no error")
	}
}

func TestBrowserLoadsAPage(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			mu.Lock()
			gotAuth = u + ":" + p
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!DOCTYPE html><title>t</title><h1 style="color:#c00;font-size:60px">hello</h1>`))
	}))
	defer srv.Close()
	ctx := New(t)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, BasicAuth("ops", "pw"), chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "ops:pw" {
		t.Errorf("basic auth seen by the server: %q", gotAuth)
	}
	if h1 != "hello" {
		t.Errorf("h1 = %q", h1)
	}
	if n, _, err := Colours(shot); err != nil || n < 3 {
		t.Errorf("screenshot: %d colours, %v", n, err)
	}
}
