package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestDrainDeadlineMetric sees a soft drain's deadline exported for its DC,
// and nothing for a hard drain or an undrained DC.
func TestDrainDeadlineMetric(t *testing.T) {
	cfg, _, err := config.Parse([]byte(twoDCs))
	if err != nil {
		t.Fatal(err)
	}
	e := routing.New(cfg, routing.Options{})
	c := NewStateCollector(e.Snapshot)
	deadline := time.Unix(1900000000, 0)
	if err := e.Drain("east", routing.Drain{Mode: "soft", Deadline: deadline, Reason: "kernel"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Drain("west", routing.Drain{Mode: "hard"}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP coopr_gslb_dc_drain_deadline_timestamp_seconds When the datacenter's soft drain lets its pinned sessions go (Unix seconds); only for soft drains with a deadline.
# TYPE coopr_gslb_dc_drain_deadline_timestamp_seconds gauge
coopr_gslb_dc_drain_deadline_timestamp_seconds{dc="east"} 1.9e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "coopr_gslb_dc_drain_deadline_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if err := e.Undrain("east", "ops"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "coopr_gslb_dc_drain_deadline_timestamp_seconds"); n != 0 {
		t.Errorf("%d deadline series after the undrain, want 0", n)
	}
}
