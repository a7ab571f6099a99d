package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// TestMetricsPassPromtool scrapes /metrics of a running binary and runs
// "promtool check metrics" over it, as a Prometheus operator would.
func TestMetricsPassPromtool(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool")
	fleet := startFleet(t)
	admin := freePort(t)
	startGSLB(t, twoDCConfig(fleet, freePort(t), freePort(t), admin, ""), admin)

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"coopr_gslb_dc_healthy{dc=\"east\",service=\"api\"} 1",
		"coopr_gslb_endpoint_up{",
		"coopr_gslb_probe_duration_seconds_bucket{",
		"coopr_gslb_dc_drained{dc=\"east\"} 0",
		"coopr_gslb_all_down{service=\"api\"} 0",
		"coopr_gslb_transitions_total{",
		"coopr_gslb_config_reloads_total{",
		"coopr_gslb_build_info{",
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
