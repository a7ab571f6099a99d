package dnsserver

import (
	"strings"

	"github.com/miekg/dns"
)

// Names handled per query are in miekg/dns presentation form: lower-case
// FQDNs in which a literal dot inside a label is escaped ("\."). miekg
// escapes every byte outside printable ASCII as \DDD, so lower-casing ASCII
// letters is enough to fold case (RFC 4343).

// appendLower appends name to dst with ASCII letters folded to lower case.
func appendLower(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// lowerString folds ASCII letters of s to lower case.
func lowerString(s string) string { return string(appendLower(make([]byte, 0, len(s)), s)) }

// escaped reports whether the byte at i in name is escaped by an odd number
// of backslashes before it.
func escaped(name []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && name[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// parent returns name without its first label: the root "." for a
// single-label name and nil for the root itself. name must be an FQDN.
func parent(name []byte) []byte {
	if len(name) <= 1 {
		return nil
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' && !escaped(name, i) {
			if i+1 == len(name) {
				return name[i:] // the root
			}
			return name[i+1:]
		}
	}
	return nil
}

// countLabels counts the labels of an FQDN; the root has none.
func countLabels(name []byte) int {
	n := 0
	for p := name; len(p) > 1; p = parent(p) {
		n++
	}
	return n
}

// inZone reports whether name is origin or below it. Both are lower-case
// FQDNs; the dot before origin must be a real label boundary, not an escaped
// dot inside a label.
func inZone(name []byte, origin string) bool {
	if origin == "." {
		return true
	}
	if len(name) < len(origin) || string(name[len(name)-len(origin):]) != origin {
		return false
	}
	if len(name) == len(origin) {
		return true
	}
	i := len(name) - len(origin) - 1
	return name[i] == '.' && !escaped(name, i)
}

// canonicalName returns name as a lower-case FQDN in miekg's presentation
// form, so that names from the configuration compare equal to names unpacked
// from queries. It reports false for a name that is not a valid domain name.
func canonicalName(name string) (string, bool) {
	name = dns.Fqdn(name)
	buf := make([]byte, 256)
	off, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return "", false
	}
	s, _, err := dns.UnpackDomainName(buf[:off], 0)
	if err != nil {
		return "", false
	}
	return lowerString(s), true
}

// absoluteName turns a name from the configuration into an FQDN: a name
// ending in a dot is absolute, a single label ("ns1") is relative to the
// zone, and any other dotted name ("ns1.example.net") is taken as written,
// since that is what people mean in YAML.
func absoluteName(name, origin string) string {
	switch {
	case strings.HasSuffix(name, "."):
		return name
	case name == "@":
		return origin
	case !strings.Contains(name, "."):
		return name + "." + origin
	default:
		return name + "."
	}
}

// mailboxName turns an SOA RNAME written as an e-mail address
// ("hostmaster@example.com") into a domain name, escaping dots of the local
// part (RFC 1035 section 8). Any other name goes through absoluteName.
func mailboxName(rname, origin string) string {
	local, domain, ok := strings.Cut(rname, "@")
	if !ok {
		return absoluteName(rname, origin)
	}
	return strings.ReplaceAll(local, ".", `\.`) + "." + dns.Fqdn(domain)
}
