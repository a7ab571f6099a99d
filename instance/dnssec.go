package instance

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/dnsserver"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// dnsRef holds the DNS server once bound, for the status page.
type dnsRef = atomic.Pointer[dnsserver.Server]

// signerRefresh is how often the signer's signatures are checked for
// refresh (dnssec.Signer.Maintain).
const signerRefresh = time.Minute

// LoadSigner loads cfg's DNSSEC keys (dns.dnssec.key_file) and returns the
// zone's signer, nil when the zone is not signed. An error names the field.
// m and onExpiring may be nil.
func LoadSigner(cfg *config.Config, m *dnssec.Metrics, onExpiring func(time.Time)) (*dnssec.Signer, error) {
	if len(cfg.DNS.DNSSEC.KeyFiles) == 0 {
		return nil, nil
	}
	keys, err := dnssec.LoadKeys(cfg.DNS.Zone, cfg.DNSSECKeyPaths())
	if err != nil {
		return nil, fmt.Errorf("dns.dnssec.key_file: %w", err)
	}
	sg, err := dnssec.New(cfg.DNS.Zone, keys, dnssec.Options{CacheSize: cfg.DNS.DNSSEC.CacheSize, Metrics: m, OnExpiryClose: onExpiring})
	if err != nil {
		return nil, fmt.Errorf("dns.dnssec.key_file: %w", err)
	}
	return sg, nil
}

// expiryAlert turns the signer's "earliest expiry is close" callbacks
// (every refresh round while it lasts) into one dnssec_expiring event per
// hour, through the routing event path (log, state log, notifications).
type expiryAlert struct {
	engine *routing.Engine
	log    *slog.Logger

	mu       sync.Mutex
	last     time.Time // when the last event was recorded
	expiring bool      // whether the last round reported a close expiry
}

func (a *expiryAlert) fire(earliest time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expiring = true
	if !a.last.IsZero() && time.Since(a.last) < time.Hour {
		return
	}
	a.last = time.Now()
	a.engine.Record(routing.Event{Kind: routing.EventDNSSECExpiring,
		Reason: "the earliest DNSSEC signature expires at " + earliest.UTC().Format(time.RFC3339) + "; signature refresh is failing"})
}

// clear notes a refresh round whose earliest expiry was not close.
func (a *expiryAlert) clear() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expiring = false
}

func (a *expiryAlert) isExpiring() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.expiring
}

// maintainSigner refreshes the signatures of the DNS server's current
// signer (the one the last reload installed) every interval until ctx is
// done. It runs in the instance's run group.
func maintainSigner(ctx context.Context, srv *dnsserver.Server, alert *expiryAlert, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sg := srv.Signer()
		if sg == nil {
			continue
		}
		was := alert.isExpiring()
		alert.clear()
		if _, err := sg.Maintain(); err != nil {
			log.Error("dnssec: refreshing signatures", "error", err)
		}
		if was && !alert.isExpiring() {
			log.Info("dnssec: signatures refreshed; the earliest expiry is no longer close")
		}
	}
}

// dnssecStatus is the status page's DNSSEC line (nil: not signed).
func dnssecStatus(srv *dnsserver.Server, alert *expiryAlert) *admin.DNSSECStatus {
	if srv == nil {
		return nil
	}
	sg := srv.Signer()
	if sg == nil {
		return nil
	}
	st := &admin.DNSSECStatus{EarliestExpiry: sg.EarliestExpiry().UTC(), Expiring: alert.isExpiring()}
	for _, ds := range sg.DS() {
		st.KeyTags = append(st.KeyTags, ds.KeyTag)
	}
	return st
}
