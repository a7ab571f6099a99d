package notify

import (
	"testing"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// TestDrainTextNamesScope: a drain's chat line names what was drained.
func TestDrainTextNamesScope(t *testing.T) {
	for _, tc := range []struct {
		ev   routing.Event
		want string
	}{
		{routing.Event{Kind: routing.EventDrained, DC: "east", Mode: "hard", By: "ops", Reason: "kernel"}, "coopr-gslb: east drained (hard) by ops: kernel"},
		{routing.Event{Kind: routing.EventDrained, DC: "east", Service: "api", Mode: "soft", By: "ops", Reason: "deploy"}, "coopr-gslb: east/api drained (soft) by ops: deploy"},
		{routing.Event{Kind: routing.EventUndrained, DC: "east", Service: "api", Endpoint: "10.0.0.1:80", By: "ops"}, "coopr-gslb: east/api/10.0.0.1:80 undrained by ops"},
		{routing.Event{Kind: routing.EventDrained, DC: "east", Endpoint: "10.0.0.1:80", Mode: "hard", By: "ops", Reason: "nic"}, "coopr-gslb: east/*/10.0.0.1:80 drained (hard) by ops: nic"},
	} {
		kind, _ := alertKind(tc.ev)
		if got := text(kind, tc.ev); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
