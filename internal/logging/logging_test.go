package logging

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLogsFollowReload(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, config.Log{Format: "text", Level: "info"})
	log := l.Logger()
	derived := log.With("component", "x").WithGroup("g")
	log.Debug("hidden")
	log.Info("plain", "k", "v")
	derived.Info("derived", "k", "v")
	l.Apply(config.Log{Format: "json", Level: "debug"})
	log.Debug("now json", "k", "v")
	derived.Info("derived json", "k", "v")
	l.Apply(config.Log{Format: "json", Level: "error"})
	log.Warn("hidden too")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"msg=plain k=v", "msg=derived component=x g.k=v"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("text line %d = %q, want %q in it", i, lines[i], want)
		}
	}
	var rec struct {
		Msg, K, Component string
		G                 struct{ K string }
		Level             string
	}
	if err := json.Unmarshal([]byte(lines[2]), &rec); err != nil || rec.Msg != "now json" || rec.K != "v" || rec.Level != "DEBUG" {
		t.Errorf("json line %q: %+v, %v", lines[2], rec, err)
	}
	rec.K = ""
	if err := json.Unmarshal([]byte(lines[3]), &rec); err != nil || rec.Component != "x" || rec.G.K != "v" {
		t.Errorf("derived json line %q: %+v, %v", lines[3], rec, err)
	}
}

func TestAccessLogDestination(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, config.Log{Format: "json", Level: "info"})
	defer l.Close()
	access := l.AccessLogger()
	access.Info("access", "n", 1)
	if !strings.Contains(out.String(), `"msg":"access","n":1`) {
		t.Fatalf("access record not in the main log: %q", out.String())
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	commit, _, err := l.PrepareAccessFile(a)
	if err != nil {
		t.Fatal(err)
	}
	access.Info("access", "n", 2) // not committed yet: main log
	commit()
	access.Info("access", "n", 3)
	// A failed preparation changes nothing.
	if _, _, err := l.PrepareAccessFile(filepath.Join(dir, "missing", "c.log")); err == nil || !strings.Contains(err.Error(), "proxy.access_log") {
		t.Errorf("error %v, want one naming proxy.access_log", err)
	}
	// A cancelled one neither.
	_, cancel, err := l.PrepareAccessFile(b)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	access.Info("access", "n", 4)
	commit, _, err = l.PrepareAccessFile("")
	if err != nil {
		t.Fatal(err)
	}
	commit()
	access.Info("access", "n", 5)

	inFile, _ := os.ReadFile(a)
	if got := strings.Count(string(inFile), `"msg":"access"`); got != 2 || !strings.Contains(string(inFile), `"n":3`) || !strings.Contains(string(inFile), `"n":4`) {
		t.Errorf("file has %d records, want n=3 and n=4: %q", got, inFile)
	}
	for _, n := range []string{`"n":1`, `"n":2`, `"n":5`} {
		if !strings.Contains(out.String(), n) {
			t.Errorf("main log lacks %s: %q", n, out.String())
		}
	}
	if strings.Contains(out.String(), `"n":3`) {
		t.Errorf("main log has a record of the file")
	}
	// The access log is records of the main log: its level applies.
	l.Apply(config.Log{Format: "json", Level: "warn"})
	access.Info("access", "n", 6)
	if strings.Contains(out.String(), `"n":6`) {
		t.Errorf("access record at info passed log.level warn")
	}
}
