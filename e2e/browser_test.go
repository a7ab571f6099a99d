package e2e

import (
	"bufio"
	"context"
	"fmt"
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
	cmd            *exec.Cmd
	admin, control string
	proxy, dns     string
	token          string
	stderrTx       *syncBuffer
}

var demoURL = regexp.MustCompile(`(?m)^\s+(proxy|status page|simulator)\s+(http://[0-9.:]+)/?`)

// demoPorts are the demo's -http, -dns, -admin and -control addresses.
type demoPorts struct{ http, dns, admin, control string }

// startDemoOn runs the demo on the given addresses (to start it again where
// a killed one was).
func startDemoOn(t *testing.T, p demoPorts) *demoProcess {
	t.Helper()
	d := &demoProcess{stderrTx: &syncBuffer{}}
	d.cmd = exec.Command(binary, "demo", "-http", p.http, "-dns", p.dns, "-admin", p.admin, "-control", p.control)
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

// TestStatusPageInBrowser opens the demo's status page in headless Chromium
// and drives it as an operator would: at 1400 and 400 px wide (no horizontal
// overflow, screenshots), the traffic sparklines, the degraded badge after
// failing east, the drain flow through the page's controls (confirm a hard
// drain, see it drained, undrain), all without reloading the page, and the
// red "not updating" banner after killing the process, gone by itself once a
// new process answers.
func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	chromium := requireTool(t, "chromium", "chromium-browser", "google-chrome")
	ports := demoPorts{freePort(t), freePort(t), freePort(t), freePort(t)}
	d := startDemoOn(t, ports)

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
	ctx, cancelTimeout := context.WithTimeout(ctx, 150*time.Second)
	defer cancelTimeout()

	eval := func(js string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if eval(js) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		text, _ := chromedp.Run(ctx, chromedp.Text("body"))
		t.Fatalf("page: no %s within 30s:\n%s", what, text)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if dir := os.Getenv("COOPR_GSLB_KEEP_SCREENSHOT"); dir != "" {
			os.WriteFile(filepath.Join(dir, name), png, 0o644)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	noOverflow := func(width int64) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if !eval(`document.documentElement.scrollWidth <= window.innerWidth && document.body.scrollWidth <= window.innerWidth`) {
			w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			t.Errorf("at %d px the page is %d px wide (horizontal overflow)", width, w)
		}
		shot(fmt.Sprintf("status-%dpx.png", width))
	}

	// The token comes from this tab's session storage, as the page keeps it.
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1400, 900),
		chromedp.Navigate("http://"+d.admin+"/"),
		chromedp.WaitVisible("#live table"),
	); err != nil {
		t.Fatal(err)
	}
	eval(`sessionStorage.setItem("coopr-gslb-token", "` + d.token + `"), true`)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+d.admin+"/")); err != nil {
		t.Fatal(err)
	}
	// (Polled: WaitVisible does not see a hidden node become visible.)
	waitFor("the drain controls", `!!document.getElementById("controls") && !document.getElementById("controls").hidden`)
	// A marker that survives only as long as the page is not reloaded.
	eval(`window.__noReload = 42, true`)
	waitFor("both DCs up", `document.querySelectorAll("#live tr.up").length >= 4 && !!document.querySelector('#glance .svc[data-service="api"] .badge.ok')`)
	if eval(`!!document.querySelector(".undrain")`) {
		t.Errorf("undrain offered with no drain in effect")
	}
	if !eval(`/192\.0\.2\.\d+\s*\(east\)/.test(document.querySelector("#glance").textContent)`) {
		t.Errorf("the DNS answer is not labelled with its DC")
	}
	if !eval(`document.querySelector("#live").textContent.includes("priority / weight")`) {
		t.Errorf("priority / weight not shown")
	}

	// Traffic through the proxy, drawn as rates and a sparkline per DC.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+d.proxy+"/v2/clusters", nil)
			req.Host = "api.coopr.example.com"
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	waitFor("sparklines with a request rate", `document.querySelectorAll("#traffic .tdc svg polyline").length >= 6 &&
		/[1-9][0-9.]* req\/s/.test(document.querySelector('#traffic .tdc[data-dc="east"]').textContent)`)
	close(stop)
	noOverflow(1400)

	// Failing east: the service line says degraded, the row says down.
	d.post(t, "/dc/east/fail?mode=refuse")
	waitFor("degraded badge", `!!document.querySelector('#glance .svc[data-service="api"] .badge.degraded') &&
		document.querySelector('#glance .svc[data-service="api"]').textContent.includes("east down") &&
		!!document.querySelector("#live tr.down") && document.querySelector("#live tr.down").textContent.includes("east")`)
	d.post(t, "/dc/east/recover")
	waitFor("east back", `!!document.querySelector('#glance .svc[data-service="api"] .badge.ok')`)

	// The drain flow: a hard drain asks for confirmation first.
	eval(`document.getElementById("drain-dc").value = "west"; document.getElementById("drain-reason").value = "browser test"; document.getElementById("drain-go").click(), true`)
	waitFor("the hard-drain confirmation", `!document.getElementById("confirm").hidden && document.getElementById("confirm-text").textContent.includes("west")`)
	if eval(`!!document.querySelector('.drain[data-dc="west"]')`) {
		t.Fatalf("drained before the confirmation")
	}
	eval(`document.getElementById("confirm-yes").click(), true`)
	waitFor("west drained", `!!document.querySelector('.drain[data-dc="west"] .undrain') &&
		[...document.querySelectorAll("#live tr.drained")].some(r => r.textContent.includes("west")) &&
		document.querySelector('.drain[data-dc="west"]').textContent.includes("browser test")`)
	eval(`document.querySelector('.undrain[data-dc="west"]').click(), true`)
	waitFor("west undrained", `!document.querySelector(".drain") && !document.querySelector("#live tr.drained")`)
	// A soft drain shows its deadline.
	eval(`var m = document.getElementById("drain-mode"); m.value = "soft"; m.dispatchEvent(new Event("change"));
		document.getElementById("drain-deadline").value = "7m"; document.getElementById("drain-go").click(), true`)
	waitFor("soft drain with its deadline", `!!document.querySelector('.drain[data-dc="west"] .deadline') &&
		/in 6m5\ds|in 7m0s/.test(document.querySelector('.drain[data-dc="west"]').textContent)`)
	noOverflow(400)
	eval(`document.querySelector('.undrain[data-dc="west"]').click(), true`)
	waitFor("west undrained", `!document.querySelector(".drain")`)
	if !eval(`window.__noReload === 42`) {
		t.Errorf("the page reloaded itself")
	}

	// Blind: the process is gone; the page says so, in red, with the time of
	// the last good update, and recovers when a new process answers.
	if !eval(`document.getElementById("blind").hidden`) {
		t.Errorf("the not-updating banner shows while updates work")
	}
	d.cmd.Process.Kill()
	waitFor("the not-updating banner", `!document.getElementById("blind").hidden &&
		/last good update at \d/.test(document.getElementById("blind").textContent) &&
		getComputedStyle(document.getElementById("blind")).backgroundColor === "rgb(179, 38, 30)" &&
		document.getElementById("blind").getBoundingClientRect().top < 100`)
	shot("status-blind.png")
	startDemoOn(t, ports)
	waitFor("the banner gone after the restart", `document.getElementById("blind").hidden`)
}
