package routing

import (
	"sort"
	"strings"
)

// hostTable maps host names to services. Exact names win over wildcards
// ("*.zone" matches any name directly or deeply under zone); among services
// sharing a host, the longest matching path prefix wins.
type hostTable struct {
	exact    map[string][]route
	wildcard map[string][]route // keyed by the zone after "*."
}

type route struct {
	prefix  string
	service *Service
}

func buildHosts(services []*Service) hostTable {
	t := hostTable{exact: map[string][]route{}, wildcard: map[string][]route{}}
	for _, s := range services {
		prefixes := s.Config.PathPrefixes
		if len(prefixes) == 0 {
			prefixes = []string{"/"}
		}
		for _, h := range s.Config.Hostnames {
			m, key := t.exact, h
			if zone, ok := strings.CutPrefix(h, "*."); ok {
				m, key = t.wildcard, zone
			}
			for _, p := range prefixes {
				m[key] = append(m[key], route{prefix: p, service: s})
			}
		}
	}
	for _, m := range []map[string][]route{t.exact, t.wildcard} {
		for _, rs := range m {
			sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
		}
	}
	return t
}

// Match returns the service for a request's host, in the form
// config.CanonicalHost gives (lower-case, without port or trailing dot), and
// path, or nil when no service claims it.
func (s *Snapshot) Match(host, path string) *Service {
	if rs, ok := s.hosts.exact[host]; ok {
		return matchPath(rs, path)
	}
	for i := strings.IndexByte(host, '.'); i >= 0; {
		zone := host[i+1:]
		if rs, ok := s.hosts.wildcard[zone]; ok {
			return matchPath(rs, path)
		}
		j := strings.IndexByte(zone, '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}

// MatchName returns the service a DNS name (lower-case, without trailing dot)
// belongs to, ignoring path prefixes: the service that claims "/" or, failing
// that, the one listed first.
func (s *Snapshot) MatchName(host string) *Service { return s.Match(host, "/") }

func matchPath(rs []route, path string) *Service {
	for _, r := range rs {
		if strings.HasPrefix(path, r.prefix) {
			return r.service
		}
	}
	if path == "/" && len(rs) > 0 {
		return rs[len(rs)-1].service
	}
	return nil
}
