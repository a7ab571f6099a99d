package dnsserver

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// packet packs m, failing the test on error.
func packet(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedAndUnsupported(t *testing.T) {
	f := start(t, "")
	good := packet(t, query("api.gslb.example.com.", dns.TypeA))

	twoQuestions := query("api.gslb.example.com.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "www.gslb.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	noQuestion := query("api.gslb.example.com.", dns.TypeA)
	noQuestion.Question = nil
	notify := query("gslb.example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := query("gslb.example.com.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	status := query("gslb.example.com.", dns.TypeSOA)
	status.Opcode = dns.OpcodeStatus
	response := query("api.gslb.example.com.", dns.TypeA)
	response.Response = true
	twoOPT := query("api.gslb.example.com.", dns.TypeA, withEDNS(1232))
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}})
	optQuestion := query("api.gslb.example.com.", dns.TypeOPT)

	truncatedQuestion := append([]byte(nil), good[:len(good)-3]...)
	badLabel := append([]byte(nil), good...)
	badLabel[12] = 0xC0 // a compression pointer in place of the first label's length...
	badLabel[13] = 0xFF // ...pointing past the end

	tests := []struct {
		name   string
		packet []byte
		rcode  int // -1: no response at all
	}{
		{"two questions", packet(t, twoQuestions), dns.RcodeFormatError},
		{"no question", packet(t, noQuestion), dns.RcodeFormatError},
		{"NOTIFY", packet(t, notify), dns.RcodeNotImplemented},
		{"UPDATE", packet(t, update), dns.RcodeNotImplemented},
		{"STATUS", packet(t, status), dns.RcodeNotImplemented},
		{"two OPT records", packet(t, twoOPT), dns.RcodeFormatError},
		{"OPT as the question type", packet(t, optQuestion), dns.RcodeFormatError},
		{"truncated question", truncatedQuestion, dns.RcodeFormatError},
		{"bad compression pointer", badLabel, dns.RcodeFormatError},
		{"a response is never answered", packet(t, response), -1},
		{"shorter than a header", good[:5], -1},
		{"empty", []byte{}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait := time.Second
			if tt.rcode < 0 {
				wait = 200 * time.Millisecond
			}
			resp := f.rawExchange(t, tt.packet, wait)
			if tt.rcode < 0 {
				if resp != nil {
					t.Fatalf("got a response of %d bytes, want none", len(resp))
				}
				return
			}
			if resp == nil {
				t.Fatal("no response")
			}
			var m dns.Msg
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("unpack response: %v", err)
			}
			if !m.Response || m.Rcode != tt.rcode {
				t.Errorf("QR %v rcode %s, want a response with %s", m.Response, dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if id := binary.BigEndian.Uint16(tt.packet); m.Id != id {
				t.Errorf("id %d, want %d", m.Id, id)
			}
			if m.Authoritative || len(m.Answer) > 0 {
				t.Errorf("error response with AA or answers:\n%v", m)
			}
		})
	}
	// The server is still there.
	wantAddrs(t, f.exchange(t, "udp", query("api.gslb.example.com.", dns.TypeA)), "192.0.2.1")
}
