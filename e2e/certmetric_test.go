package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// certExpiry scrapes coopr_gslb_tls_certificate_expiry_timestamp_seconds
// from the admin listener: name -> expiry.
func certExpiry(t *testing.T, admin string) map[string]time.Time {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]time.Time{}
	const prefix = `coopr_gslb_tls_certificate_expiry_timestamp_seconds{name="`
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		name, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[name] = time.Unix(int64(f), 0)
	}
	return out
}

// wantCertExpiry checks, within 10 s, that every name has a certificate
// expiry in the future, within a year and a half.
func wantCertExpiry(t *testing.T, admin string, names ...string) {
	t.Helper()
	var problem string
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		got := certExpiry(t, admin)
		problem = ""
		for _, n := range names {
			exp, ok := got[n]
			if !ok || exp.Before(time.Now()) || exp.After(time.Now().Add(550*24*time.Hour)) {
				problem += fmt.Sprintf(" %s=%v (found %v)", n, exp, ok)
			}
		}
		if problem == "" {
			return
		}
	}
	t.Errorf("certificate expiry metric:%s", problem)
}
