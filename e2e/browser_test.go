package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// requireTool finds an external tool; in CI a missing tool fails the test
// (the CI script installs it), elsewhere the test is skipped.
func requireTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed; .ci/run must install it", strings.Join(names, " or "))
	}
	t.Skipf("%s not installed", strings.Join(names, " or "))
	return ""
}

// demoProcess is a running "coopr-gslb demo" and the URLs it printed.
type demoProcess struct {
	cmd              *exec.Cmd
	admin, control   string
	proxy, dns       string
	token            string
	stdout, stderrTx *syncBuffer
}

var demoURL = regexp.MustCompile(`(?m)^\s+(proxy|status page|simulator)\s+(http://[0-9.:]+)/?`)

func startDemo(t *testing.T) *demoProcess {
	t.Helper()
	d := &demoProcess{stderrTx: &syncBuffer{}}
	d.cmd = exec.Command(binary, "demo", "-http", freePort(t), "-dns", freePort(t), "-admin", freePort(t), "-control", freePort(t))
	d.cmd.Env = append(os.Environ(), "COOPR_GSLB_ADMIN_TOKEN=demo-token")
	d.token = "demo-token"
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = d.stderrTx
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", d.stderrTx.String())
		}
	})
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		closed := false
		for sc.Scan() {
			line := sc.Text()
			if m := demoURL.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "proxy":
					d.proxy = strings.TrimPrefix(m[2], "http://")
				case "status page":
					d.admin = strings.TrimPrefix(m[2], "http://")
				case "simulator":
					d.control = m[2]
				}
			}
			if strings.Contains(line, "DNS ") && d.dns == "" {
				f := strings.Fields(line)
				if len(f) > 1 {
					d.dns = f[1]
				}
			}
			if strings.HasPrefix(line, "Press Ctrl-C") && !closed {
				close(found)
				closed = true
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case <-found:
	case <-time.After(30 * time.Second):
		t.Fatalf("demo did not print its URLs:\n%s", d.stderrTx.String())
	}
	return d
}

func (d *demoProcess) post(t *testing.T, path string) {
	t.Helper()
	resp, err := http.Post(d.control+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
}

// TestStatusPageInBrowser opens the demo's status page in headless Chromium,
// fails east in the simulator, and sees the page change without a reload.
func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	chromium := requireTool(t, "chromium", "chromium-browser", "google-chrome")
	d := startDemo(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	if err := chromedp.Do(ctx,
		chromedp.Navigate("http://"+d.admin+"/"),
		chromedp.WaitVisible("#live table"),
	); err != nil {
		t.Fatal(err)
	}
	// A marker that survives only as long as the page is not reloaded.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 42`)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#live"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "east") || !strings.Contains(text, "west") || strings.Count(text, "up") < 4 {
		t.Fatalf("page does not show both DCs up:\n%s", text)
	}

	d.post(t, "/dc/east/fail?mode=refuse")
	down := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !down {
		time.Sleep(500 * time.Millisecond)
		down, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector("#live tr.down") && document.querySelector("#live tr.down").textContent.includes("east") && window.__noReload === 42`))
		if err != nil {
			t.Fatal(err)
		}
	}
	if !down {
		text, _ = chromedp.Run(ctx, chromedp.Text("#live"))
		t.Fatalf("page did not show east down without a reload:\n%s", text)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "status-east-down.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("COOPR_GSLB_KEEP_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, shot, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
}
