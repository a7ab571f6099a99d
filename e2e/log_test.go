package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFormatLevelAndAccessLog runs the binary with log.format json and
// the access log in a file of its own, then reloads: to level warn with the
// access log back in the main log (so it is hidden), then to text at info
// (the access log is records of the main log again). One process, one
// logger; nothing of the old settings leaks into the new.
func TestLogFormatLevelAndAccessLog(t *testing.T) {
	t.Parallel()
	fleet := startFleet(t)
	admin, httpAddr := freePort(t), freePort(t)
	accessFile := filepath.Join(t.TempDir(), "access.log")
	cfg := func(log, access string) string {
		return opsConfig(t, fleet, admin, httpAddr, "", fmt.Sprintf("log: %s\nproxy: {access_log: %s}\n", log, access))
	}
	g := startGSLB(t, cfg("{format: json, level: info}", fmt.Sprintf("%q", accessFile)), admin)
	get := func(path string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+httpAddr+path, nil)
		req.Host = "api.coopr.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	reload := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(g.cfgPath, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := cli(t, admin, "reload", "-token", testToken); code != 0 {
			t.Fatalf("reload: %d %s %s", code, out, errOut)
		}
	}
	defer http.DefaultClient.CloseIdleConnections()

	get("/json-file")
	eventually(t, 5*time.Second, "the access record in its file", func() bool {
		b, _ := os.ReadFile(accessFile)
		return strings.Contains(string(b), `"path":"/json-file"`)
	})
	// The main log is JSON from its first line, and has no access record.
	lines := strings.Split(strings.TrimSpace(g.stderr.String()), "\n")
	var first struct{ Msg, Version string }
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Msg != "coopr-gslb starting" || first.Version == "" {
		t.Errorf("first line %q is not the JSON start record: %v", lines[0], err)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("main log line is not JSON: %q", l)
		}
	}
	if strings.Contains(g.stderr.String(), "/json-file") {
		t.Errorf("the access record went to the main log too")
	}

	// Level warn, access log back in the main log: hidden at warn.
	reload(cfg("{format: json, level: warn}", "true"))
	get("/at-warn")
	// Text at info: access records are text records of the main log.
	reload(cfg("{format: text, level: info}", "true"))
	get("/text-main")
	eventually(t, 5*time.Second, "the access record in the main log", func() bool {
		return strings.Contains(g.stderr.String(), "path=/text-main")
	})
	b, _ := os.ReadFile(accessFile)
	if n := strings.Count(string(b), `"msg":"access"`); n != 1 {
		t.Errorf("access file has %d records after it was switched off, want 1:\n%s", n, b)
	}
	if strings.Contains(g.stderr.String(), "/at-warn") {
		t.Errorf("an info access record passed log.level warn")
	}
	if !strings.Contains(g.stderr.String(), `level=INFO msg=access`) {
		t.Errorf("the access record is not a text record of the main log:\n%s", g.stderr.String())
	}

	// A bad log block is a failed reload that names the line; the log stays.
	if err := os.WriteFile(g.cfgPath, []byte(cfg("{format: yaml}", "true")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, admin, "reload", "-token", testToken)
	if code == 0 || !strings.Contains(out+errOut, `log.format: "yaml" is not a log format`) {
		t.Errorf("bad log.format reload: %d %s %s", code, out, errOut)
	}
	get("/still-text")
	eventually(t, 5*time.Second, "text records after the failed reload", func() bool {
		return strings.Contains(g.stderr.String(), "path=/still-text")
	})
}
