package routing

// EndpointID names one endpoint of one service in one datacenter. It is the
// key of everything kept per endpoint (health, probe results, passive
// signals); compare it, never a joined string.
type EndpointID struct {
	DC, Service, Endpoint string
}

// String renders the ID as "dc/service/endpoint", for logs and for APIs
// that take a string key.
func (id EndpointID) String() string { return id.DC + "/" + id.Service + "/" + id.Endpoint }

// ID returns the endpoint the update is about.
func (u EndpointUpdate) ID() EndpointID {
	return EndpointID{DC: u.DC, Service: u.Service, Endpoint: u.Endpoint}
}

// dcKey names one datacenter of one service.
type dcKey struct{ service, dc string }

// shardKey names one partition of one service's shard map.
type shardKey struct {
	service   string
	partition int
}
