package dnssec

import (
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkSignResponse measures a positive answer signed from the
// pre-signed set (warm) and a signature computed for every call (cold).
func BenchmarkSignResponse(b *testing.B) {
	s := mustSigner(b, newClock(), Options{})
	set := rrs(b, "api.coopr.example.com. 20 IN A 192.0.2.10", "api.coopr.example.com. 20 IN A 192.0.2.20")
	if err := s.Presign([][]dns.RR{set}); err != nil {
		b.Fatal(err)
	}
	req := query("api.coopr.example.com.", dns.TypeA, true, false)
	b.Run("presigned", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp := new(dns.Msg)
			resp.SetReply(req)
			resp.Answer = []dns.RR{set[0], set[1]}
			if err := s.SignResponse(req, resp, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		e := &entry{rrset: canonicalSet(set)}
		for b.Loop() {
			if _, err := s.sign(e, s.opts.Clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
