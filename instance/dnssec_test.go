package instance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func writeZoneKey(t *testing.T, path string) *dnssec.Key {
	t.Helper()
	k, err := dnssec.GenerateKey("coopr.example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if err := dnssec.WriteKeyFile(path, k, time.Now()); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestDNSSECReload: the key file is read at start and on every reload; a
// reload with a bad key file fails naming the field and the old key keeps
// signing.
func TestDNSSECReload(t *testing.T) {
	be := backend(t)
	dir := t.TempDir()
	k1 := writeZoneKey(t, filepath.Join(dir, "k1.key"))
	k2 := writeZoneKey(t, filepath.Join(dir, "k2.key"))
	writeFile(t, filepath.Join(dir, "bad.key"), "; not a key\n")
	yaml := func(key string) string {
		return fmt.Sprintf(runYAML, be.Addr(), "  dnssec:\n    key_file: "+key+"\n")
	}
	cfg, path := loadYAML(t, yaml(filepath.Join(dir, "k1.key")))
	s := start(t, cfg, Options{ConfigPath: path})
	addr := s.inst.Addrs().DNS

	// signedKey returns the tag of the DNSKEY served, checking its RRSIG.
	signedKey := func() uint16 {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("coopr.example.com.", dns.TypeDNSKEY)
		m.SetEdns0(1232, true)
		r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		var key *dns.DNSKEY
		var sig *dns.RRSIG
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.DNSKEY:
				key = rr
			case *dns.RRSIG:
				sig = rr
			}
		}
		if key == nil || sig == nil {
			t.Fatalf("DNSKEY answer:\n%v", r)
		}
		if err := sig.Verify(key, []dns.RR{key}); err != nil {
			t.Fatalf("DNSKEY RRSIG: %v", err)
		}
		return key.KeyTag()
	}
	if got := signedKey(); got != k1.Tag {
		t.Fatalf("key %d served, want %d", got, k1.Tag)
	}
	resp, err := http.Get("http://" + s.inst.Addrs().Admin + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ DNSSEC *admin.DNSSECStatus }
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.DNSSEC == nil || len(st.DNSSEC.KeyTags) != 1 || st.DNSSEC.KeyTags[0] != k1.Tag || time.Until(st.DNSSEC.EarliestExpiry) < 24*time.Hour {
		t.Errorf("status dnssec = %+v (%v)", st.DNSSEC, err)
	}

	writeFile(t, path, yaml(filepath.Join(dir, "k2.key")))
	if err := s.inst.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := signedKey(); got != k2.Tag {
		t.Fatalf("after reload: key %d served, want %d", got, k2.Tag)
	}

	writeFile(t, path, yaml(filepath.Join(dir, "bad.key")))
	err = s.inst.Reload()
	if err == nil || !strings.Contains(err.Error(), "dns.dnssec.key_file") {
		t.Fatalf("reload with a bad key: %v, want an error naming dns.dnssec.key_file", err)
	}
	if got := signedKey(); got != k2.Tag {
		t.Fatalf("after a failed reload: key %d served, want %d", got, k2.Tag)
	}
}

// TestDNSSECExpiryAlert: a close expiry is one dnssec_expiring event (per
// hour, however often refresh reports it) in the routing history.
func TestDNSSECExpiryAlert(t *testing.T) {
	cfg, _ := loadYAML(t, fmt.Sprintf(runYAML, "127.0.0.1:1", ""))
	engine := routing.New(cfg, routing.Options{})
	a := &expiryAlert{engine: engine}
	at := time.Now().Add(3 * time.Hour)
	a.fire(at)
	a.fire(at)
	n := 0
	for _, ev := range engine.Events(time.Time{}) {
		if ev.Kind == routing.EventDNSSECExpiring {
			n++
			if !strings.Contains(ev.Reason, at.UTC().Format(time.RFC3339)) {
				t.Errorf("reason %q lacks the expiry", ev.Reason)
			}
		}
	}
	if n != 1 || !a.isExpiring() {
		t.Errorf("%d dnssec_expiring events, expiring %v; want 1, true", n, a.isExpiring())
	}
	a.clear()
	if a.isExpiring() {
		t.Error("still expiring after a clear round")
	}
}
