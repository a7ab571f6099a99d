package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// frontDoors are the running HTTP proxy and DNS responder.
type frontDoors struct {
	servers   []*managedServer
	http, dns string
}

// startFrontDoors starts the proxy and the DNS responder the config enables.
func startFrontDoors(cfg *config.Config, engine *routing.Engine, reg prometheus.Registerer, log *slog.Logger) (*frontDoors, error) {
	f := &frontDoors{}
	return f, nil
}

// reload hands a new configuration to the front doors that keep per-config state.
func (f *frontDoors) reload(cfg *config.Config) {}
