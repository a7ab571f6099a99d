// Package dnssec signs the answers of coopr-gslb's authoritative zone online:
// ECDSA P-256 (algorithm 13) keys, signatures cached per RRset, and compact
// denial of existence (RFC 9824). All cryptography is miekg/dns's DNSSEC
// helpers over crypto/ecdsa.
//
// The package does not send or receive messages: the DNS server builds a
// complete answer and hands it to Signer.SignResponse when the query had the
// DO bit. Truncation (TC) and the choice of UDP size stay with the server,
// which must apply them after signing, because signatures make answers larger.
package dnssec

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Algorithm is the only algorithm coopr-gslb signs with: ECDSAP256SHA256.
const Algorithm = dns.ECDSAP256SHA256

// KeyFlags marks a combined signing key: zone key and secure entry point
// (one key plays KSK and ZSK).
const KeyFlags = dns.ZONE | dns.SEP

// DefaultDNSKEYTTL is the TTL of the DNSKEY RRset unless Options say otherwise.
const DefaultDNSKEYTTL = 3600

// Key is one signing key: its DNSKEY record and its private key. A Key is
// immutable after it is loaded and safe for concurrent use.
type Key struct {
	DNSKEY *dns.DNSKEY
	Signer crypto.Signer
	// Tag is the key tag of DNSKEY, computed once.
	Tag uint16
}

// GenerateKey makes a new combined signing key for zone.
func GenerateKey(zone string) (*Key, error) {
	zone = dns.CanonicalName(zone)
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("dnssec: %q is not a domain name", zone)
	}
	k := &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: zone, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: DefaultDNSKEYTTL},
		Flags:     KeyFlags,
		Protocol:  3,
		Algorithm: Algorithm,
	}
	priv, err := k.Generate(256)
	if err != nil {
		return nil, fmt.Errorf("dnssec: generate key: %w", err)
	}
	return &Key{DNSKEY: k, Signer: priv.(*ecdsa.PrivateKey), Tag: k.KeyTag()}, nil
}

// DS returns the DS record (SHA-256 digest) the parent zone publishes for k.
func (k *Key) DS() *dns.DS { return k.DNSKEY.ToDS(dns.SHA256) }

// Marshal renders k as a key file: comment lines, the DNSKEY record in
// zone-file syntax, then the private key in the BIND "Private-key-format"
// syntax (what BIND writes to K*.key and K*.private, in one file).
func (k *Key) Marshal(created time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "; coopr-gslb DNSSEC key for %s: ECDSAP256SHA256 combined signing key (flags %d), key tag %d\n",
		k.DNSKEY.Hdr.Name, k.DNSKEY.Flags, k.Tag)
	fmt.Fprintf(&b, "; created %s. Keep this file secret; publish only the DS below at the parent.\n", created.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "; %s\n", k.DS())
	fmt.Fprintf(&b, "%s\n", k.DNSKEY)
	b.WriteString(k.DNSKEY.PrivateKeyString(k.Signer))
	return b.Bytes()
}

// ParseKey reads a key file written by Marshal. name is used in errors.
func ParseKey(name string, data []byte) (*Key, error) {
	var pub, priv strings.Builder
	inPriv := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Private-key-format:") {
			inPriv = true
		}
		if inPriv {
			priv.WriteString(line + "\n")
		} else {
			pub.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var dk *dns.DNSKEY
	zp := dns.NewZoneParser(strings.NewReader(pub.String()), ".", name)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		k, isKey := rr.(*dns.DNSKEY)
		if !isKey {
			return nil, fmt.Errorf("%s: %s record where a DNSKEY was expected", name, dns.TypeToString[rr.Header().Rrtype])
		}
		if dk != nil {
			return nil, fmt.Errorf("%s: more than one DNSKEY", name)
		}
		dk = k
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if dk == nil {
		return nil, fmt.Errorf("%s: no DNSKEY record", name)
	}
	if dk.Algorithm != Algorithm {
		return nil, fmt.Errorf("%s: algorithm %d, want %d (ECDSAP256SHA256)", name, dk.Algorithm, Algorithm)
	}
	if dk.Flags&dns.ZONE == 0 || dk.Protocol != 3 {
		return nil, fmt.Errorf("%s: DNSKEY is not a zone key (flags %d, protocol %d)", name, dk.Flags, dk.Protocol)
	}
	if priv.Len() == 0 {
		return nil, fmt.Errorf("%s: no private key (Private-key-format section)", name)
	}
	pk, err := dk.ReadPrivateKey(strings.NewReader(priv.String()), name)
	if err != nil {
		return nil, fmt.Errorf("%s: private key: %w", name, err)
	}
	ek, ok := pk.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: private key is not ECDSA", name)
	}
	// The private key must belong to the DNSKEY, or every signature fails validation.
	if err := checkPair(dk, ek); err != nil {
		return nil, fmt.Errorf("%s: private key does not match the DNSKEY: %w", name, err)
	}
	dk.Hdr.Name = dns.CanonicalName(dk.Hdr.Name)
	return &Key{DNSKEY: dk, Signer: ek, Tag: dk.KeyTag()}, nil
}

// LoadKeyFile reads and parses the key file at path.
func LoadKeyFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseKey(path, data)
}

// ErrKeyExists is returned by WriteKeyFile when the file is already there.
var ErrKeyExists = errors.New("key file exists")

// WriteKeyFile writes k to a new file at path, readable by its owner only.
// It never overwrites: an existing path is ErrKeyExists.
func WriteKeyFile(path string, k *Key, created time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w (refusing to overwrite a key)", path, ErrKeyExists)
		}
		return err
	}
	if _, err := f.Write(k.Marshal(created)); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// LoadKeys loads the key files of zone in order: the first signs, the others
// are published only. Every key must belong to zone and the tags must differ.
func LoadKeys(zone string, paths []string) ([]*Key, error) {
	if len(paths) == 0 {
		return nil, errors.New("dnssec: no key files")
	}
	zone = dns.CanonicalName(zone)
	keys := make([]*Key, 0, len(paths))
	tags := map[uint16]string{}
	for _, p := range paths {
		k, err := LoadKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("dnssec: %w", err)
		}
		if k.DNSKEY.Hdr.Name != zone {
			return nil, fmt.Errorf("dnssec: %s: key is for %s, the zone is %s", p, k.DNSKEY.Hdr.Name, zone)
		}
		if other, dup := tags[k.Tag]; dup {
			return nil, fmt.Errorf("dnssec: %s: key tag %d is also %s's", p, k.Tag, other)
		}
		tags[k.Tag] = p
		keys = append(keys, k)
	}
	return keys, nil
}

// checkPair signs a probe RRset with priv and verifies it with dk, so a key
// file whose halves were mixed up is refused at load rather than served.
func checkPair(dk *dns.DNSKEY, priv crypto.Signer) error {
	probe := []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: dk.Hdr.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 1}, Txt: []string{"probe"}}}
	sig := &dns.RRSIG{Algorithm: dk.Algorithm, KeyTag: dk.KeyTag(), SignerName: dk.Hdr.Name, Inception: 0, Expiration: 1<<32 - 1}
	if err := sig.Sign(priv, probe); err != nil {
		return err
	}
	return sig.Verify(dk, probe)
}
