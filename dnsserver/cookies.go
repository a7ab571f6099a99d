package dnsserver

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/dchest/siphash"
	"github.com/miekg/dns"
)

// DNS Cookies (RFC 7873) with the interoperable server cookie of RFC 9018:
//
//	server cookie = version 1 | 3 reserved bytes | timestamp (4) | hash (8)
//	hash = SipHash-2-4(secret; client cookie | version | reserved | timestamp | client IP)
//
// Instances that share the secret accept each other's cookies, so a
// resolver talking to several of them keeps a valid cookie. A server cookie
// is valid from an hour before now to five minutes after (RFC 9018 section
// 4.3); every response carries a fresh one.

const (
	cookieVersion = 1
	cookieMaxAge  = time.Hour
	cookieSkew    = 5 * time.Minute
)

// cookieKey is a 128-bit SipHash key.
type cookieKey struct{ k0, k1 uint64 }

// newCookieKey derives a key from a secret: 32 hex digits are the key
// itself (as BIND and Knot write theirs), anything else is hashed.
func newCookieKey(secret []byte) *cookieKey {
	var k [16]byte
	if n, err := hex.Decode(k[:], secret); err != nil || n != 16 || len(secret) != 32 {
		sum := sha256.Sum256(secret)
		copy(k[:], sum[:16])
	}
	return &cookieKey{binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])}
}

func randomCookieKey() *cookieKey {
	var k [16]byte
	rand.Read(k[:]) // never fails (crypto/rand)
	return &cookieKey{binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])}
}

// SetCookieSecret makes secret (at least 16 bytes) the server cookie secret,
// for the cluster code to share one between instances. dns.cookie_secret_file,
// when configured, still wins. It is safe to call at any time.
func (s *Server) SetCookieSecret(secret []byte) {
	s.cookieSecret.Store(newCookieKey(secret))
}

// cookieKeyFor returns the key that signs cookies under v.
func (s *Server) cookieKeyFor(v *view) *cookieKey {
	if v != nil && v.zone.cookieKey != nil {
		return v.zone.cookieKey
	}
	return s.cookieSecret.Load()
}

// serverCookie appends the server cookie for client cookie cc and client
// ip at time ts to dst.
func (k *cookieKey) serverCookie(dst []byte, cc []byte, ip netip.Addr, ts uint32) []byte {
	var in [8 + 8 + 16]byte
	n := copy(in[:], cc)
	in[n] = cookieVersion
	binary.BigEndian.PutUint32(in[n+4:], ts)
	n += 8
	a := ip.AsSlice()
	n += copy(in[n:], a)
	h := siphash.Hash(k.k0, k.k1, in[:n])
	dst = append(dst, cookieVersion, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, ts)
	return binary.LittleEndian.AppendUint64(dst, h)
}

// checkCookie looks at the query's COOKIE option, when cookies are on: it
// sets r.cookieOut to the client cookie with a fresh server cookie, and
// reports whether the query's server cookie is valid for client at now. A
// malformed option is left to parseEDNS (FORMERR).
func (s *Server) checkCookie(v *view, req *dns.Msg, client netip.Addr, now time.Time, r *response) (valid bool) {
	if v == nil || !v.zone.settings.cookies || !client.IsValid() {
		return false
	}
	opt := req.IsEdns0()
	if opt == nil {
		return false
	}
	var c string
	for _, o := range opt.Option {
		if co, ok := o.(*dns.EDNS0_COOKIE); ok {
			c = co.Cookie
			break
		}
	}
	var raw [40]byte
	n, err := hex.Decode(raw[:], []byte(c))
	if err != nil || (n != 8 && (n < 16 || n > 40)) {
		return false
	}
	k := s.cookieKeyFor(v)
	if k == nil {
		return false
	}
	client = client.Unmap()
	ts := uint32(now.Unix())
	if n == 24 && raw[8] == cookieVersion {
		sent := binary.BigEndian.Uint32(raw[12:16])
		// RFC 1982 arithmetic: the timestamp wraps in 2106.
		age := int32(ts - sent)
		if age <= int32(cookieMaxAge/time.Second) && age >= -int32(cookieSkew/time.Second) {
			var want [16]byte
			valid = string(k.serverCookie(want[:0], raw[:8], client, sent)) == string(raw[8:24])
		}
	}
	var out [24]byte
	copy(out[:], raw[:8])
	k.serverCookie(out[8:8], raw[:8], client, ts)
	r.cookieOut = hex.EncodeToString(out[:])
	return valid
}

// badCookie builds the response to a query with a cookie that RRL would
// limit: BADCOOKIE with a fresh server cookie (RFC 7873 section 5.2.3),
// no larger than the query, with which the client retries and gets through.
func badCookie(v *view, req *dns.Msg, r *response) {
	out := r.cookieOut
	r.begin(req)
	r.edns, _ = parseEDNS(req)
	r.cookieOut = out
	r.msg.Rcode = dns.RcodeBadCookie
	r.finish(v)
}
