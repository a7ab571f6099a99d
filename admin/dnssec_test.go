package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestDNSSECStatus: /api/v1/status carries the signing state and the page
// a DNSSEC line, a warning when the earliest expiry is close; an unsigned
// zone has neither.
func TestDNSSECStatus(t *testing.T) {
	cfg, _, err := config.Parse([]byte(twoDCs))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		st       *DNSSECStatus
		wantPage string
	}{
		{"unsigned", nil, ""},
		{"signed", &DNSSECStatus{KeyTags: []uint16{12345, 678}, EarliestExpiry: expiry}, `class="meta" id="dnssec">DNSSEC: signed with key 12345, 678 · earliest signature expiry 2030-01-02 03:04:05 UTC</p>`},
		{"expiring", &DNSSECStatus{KeyTags: []uint16{12345}, EarliestExpiry: expiry, Expiring: true}, `class="warn" id="dnssec">DNSSEC: signed with key 12345 · earliest signature expiry 2030-01-02 03:04:05 UTC · <b>refresh is failing</b></p>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Snapshot: e.Snapshot}
			if tc.st != nil {
				opts.DNSSEC = func() *DNSSECStatus { return tc.st }
			}
			h := New(opts)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status", nil))
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			raw, has := doc["dnssec"]
			if has != (tc.st != nil) {
				t.Fatalf("dnssec field present %v, want %v: %s", has, tc.st != nil, rec.Body)
			}
			if has && !strings.Contains(string(raw), `"earliest_signature_expiry": "2030-01-02T03:04:05Z"`) {
				t.Errorf("dnssec = %s", raw)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			page := rec.Body.String()
			if tc.wantPage == "" && strings.Contains(page, `id="dnssec"`) {
				t.Errorf("DNSSEC line on an unsigned zone's page")
			}
			if tc.wantPage != "" && !strings.Contains(page, tc.wantPage) {
				t.Errorf("page lacks %q", tc.wantPage)
			}
		})
	}
}
