package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// TestOnStatus: an idempotent request answered with a code of
// retry.on_status is retried in another DC; a POST is not; when every DC
// answers one, the last answer is returned.
func TestOnStatus(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		west, east http.HandlerFunc
		method     string
		wantCode   int
		wantBody   string
		wantEast   int64
	}{
		{"500 is retried by default", "", status(500, "west broke"), ok("east"), "GET", 200, "east", 1},
		{"502 is retried by default", "", status(502, "west bad gw"), ok("east"), "HEAD", 200, "", 1},
		{"a POST is not retried", "", status(500, "west broke"), ok("east"), "POST", 500, "west broke", 0},
		{"a code outside on_status is not retried", "proxy: {retry: {on_status: [503]}}\n", status(500, "west broke"), ok("east"), "GET", 500, "west broke", 0},
		{"a listed code beyond the defaults", "proxy: {retry: {on_status: [507]}}\n", status(507, "west full"), ok("east"), "GET", 200, "east", 1},
		{"every DC fails: the last answer", "", status(500, "west broke"), status(503, "east busy"), "GET", 503, "east busy", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			west, east := newBackend(t, "west", tt.west), newBackend(t, "east", tt.east)
			e := newEnv(t, twoDC+tt.extra, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader("{}")
			}
			var code int
			var got string
			if body != nil {
				code, got, _ = e.call(tt.method, "api.coopr.test", "/", body, nil)
			} else {
				code, got, _ = e.call(tt.method, "api.coopr.test", "/", nil, nil)
			}
			if code != tt.wantCode || got != tt.wantBody || east.hits.Load() != tt.wantEast {
				t.Fatalf("got %d %q, east hits %d; want %d %q, %d", code, got, east.hits.Load(), tt.wantCode, tt.wantBody, tt.wantEast)
			}
		})
	}
}
