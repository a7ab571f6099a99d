package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestPageShowsScopedDrains sees an endpoint drain on its endpoint's line
// and a service drain on its service's line and in its DC's state, with
// mode and reason, and both in the list of drains in effect.
func TestPageShowsScopedDrains(t *testing.T) {
	srv, e := newTestServer(t, false)
	get := func() string {
		t.Helper()
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	before := get()
	for _, not := range []string{"epdrain", `class="sdrain"`, "sdrain-note", "service drained"} {
		if strings.Contains(before, not) {
			t.Errorf("page without drains has %q", not)
		}
	}
	if err := e.DrainScoped(routing.DrainScope{DC: "east", Service: "api", Endpoint: "127.0.0.1:1002"}, routing.Drain{Mode: "hard", Reason: "disk swap", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	page := get()
	for _, want := range []string{
		`<div class="ep up drained">127.0.0.1:1002: up · <b class="epdrain">drained (hard)</b>: disk swap`,
		`<div class="ep up">127.0.0.1:1001: up`,
		`<div class="sdrain" data-dc="east" data-service="api" data-endpoint="127.0.0.1:1002"><b>east/api/127.0.0.1:1002</b> endpoint drained (hard) by alice: disk swap`,
		`coopr-gslb undrain east -service api -endpoint 127.0.0.1:1002`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("endpoint drain: page lacks %q", want)
		}
	}
	if err := e.DrainScoped(routing.DrainScope{DC: "west", Service: "api"}, routing.Drain{Mode: "hard", Reason: "canary", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	page = get()
	for _, want := range []string{
		`<span class="sdrain-note" data-dc="west">west: service drained (hard): canary</span>`,
		`<b>west/api</b> service drained (hard) by bob: canary`,
		`service drained (hard) by bob: canary</small>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("service drain: page lacks %q", want)
		}
	}
	// The CSP hashes still cover the page's inline script and style.
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, tag := range [][2]string{{"<script>", "</script>"}, {"<style>", "</style>"}} {
		if h := inlineHashes(body, tag[0], tag[1]); h == "'none'" || !strings.Contains(csp, h) {
			t.Errorf("CSP %q does not carry the hashes %s of %s", csp, h, tag[0])
		}
	}
}
