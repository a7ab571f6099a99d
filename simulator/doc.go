// Package simulator runs fake Coopr servers on loopback that answer like Coopr
// and fail the way real servers fail.
//
// A Server is one endpoint (a coopr-server or a coopr-ui). A Datacenter groups
// the endpoints of one DC, which share one cluster store and one ID partition
// just as the servers of a real DC share one database. A Fleet holds several
// datacenters and offers an HTTP control handler so that demos and scripts can
// break and heal them while traffic flows.
//
// Every endpoint can be given a Fault at any time, concurrently with serving:
// refused connections, hung requests, slow answers, 500s, flapping, or a given
// number of failed health probes.
package simulator
