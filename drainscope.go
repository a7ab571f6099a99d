package main

import (
	"flag"
	"net/url"
)

// drainScopeFlags adds -service and -endpoint to drain and undrain, and
// returns the admin API path of what they name and its label ("east",
// "east/api", "east/api/10.0.0.1:8080", "east/*/10.0.0.1:8080").
func drainScopeFlags(fs *flag.FlagSet) func(dc string) (path, label string) {
	svc := fs.String("service", "", "only this service in the datacenter")
	ep := fs.String("endpoint", "", "only this endpoint (ADDR as in the config): of -service, or of every service of the datacenter")
	return func(dc string) (string, string) {
		base := "/api/v1/datacenters/" + url.PathEscape(dc)
		switch {
		case *svc != "" && *ep != "":
			return base + "/services/" + url.PathEscape(*svc) + "/endpoints/" + url.PathEscape(*ep) + "/drain", dc + "/" + *svc + "/" + *ep
		case *svc != "":
			return base + "/services/" + url.PathEscape(*svc) + "/drain", dc + "/" + *svc
		case *ep != "":
			return drainPath(dc) + "?endpoint=" + url.QueryEscape(*ep), dc + "/*/" + *ep
		}
		return drainPath(dc), dc
	}
}
