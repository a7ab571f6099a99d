package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// UpstreamTLS is how the proxy and the health probes speak TLS to a
// service's endpoints (services.NAME.upstream_tls, overridden per DC at
// datacenters[].services.NAME.upstream_tls).
//
// Load reads the files it names into CAPEM, CertPEM and KeyPEM, so that
// everything built from one Config uses the same bytes and a reload reads
// the files again. The value is read-only once loaded.
type UpstreamTLS struct {
	// CAFile is a PEM file of the CAs that sign the endpoints'
	// certificates. If empty, the system's roots are trusted.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the endpoints' certificates must be valid for,
	// also sent as SNI. If empty, the endpoint's host is used.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are the client certificate (chain) and key
	// presented to endpoints that require one (mTLS). Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`

	// CAPEM, CertPEM and KeyPEM are the contents of the files, filled by Load.
	CAPEM   []byte `yaml:"-"`
	CertPEM []byte `yaml:"-"`
	KeyPEM  []byte `yaml:"-"`
}

// UpstreamTLSFor returns the effective upstream TLS settings of service in
// datacenter dc (the service's upstream_tls with the DC's override), or nil
// when the endpoints are reached over plain HTTP or the DC does not deploy
// the service.
func (c *Config) UpstreamTLSFor(service, dc string) *UpstreamTLS {
	for _, d := range c.Datacenters {
		if d != nil && d.Name == dc {
			if ds := d.Services[service]; ds != nil {
				return ds.EffectiveUpstreamTLS
			}
			return nil
		}
	}
	return nil
}

// over returns u with the fields it leaves empty taken from base. The
// client certificate and key are one setting: a u that names either takes
// neither from base.
func (u *UpstreamTLS) over(base *UpstreamTLS) *UpstreamTLS {
	switch {
	case u == nil && base == nil:
		return nil
	case u == nil:
		c := *base
		return &c
	case base == nil:
		c := *u
		return &c
	}
	c := *u
	if c.CAFile == "" {
		c.CAFile = base.CAFile
	}
	if c.ServerName == "" {
		c.ServerName = base.ServerName
	}
	if c.CertFile == "" && c.KeyFile == "" {
		c.CertFile, c.KeyFile = base.CertFile, base.KeyFile
	}
	if !c.InsecureSkipVerify {
		c.InsecureSkipVerify = base.InsecureSkipVerify
	}
	return &c
}

// tlsFiles are the upstream TLS files read during one validation, so a file
// named by a service and several DCs is read and reported once.
type tlsFiles struct {
	data map[string][]byte
	bad  map[string]bool
	// shared is the effective value of a service's DCs without override.
	shared map[*Service]*UpstreamTLS
}

// read returns the file's contents, reporting at path when it cannot be read.
func (v *validator) readTLSFile(path, file string) []byte {
	if v.files.data == nil {
		v.files.data, v.files.bad = map[string][]byte{}, map[string]bool{}
	}
	if b, ok := v.files.data[file]; ok {
		return b
	}
	if v.files.bad[file] {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		v.files.bad[file] = true
		v.errorf(path, "cannot read %s: %v", file, unwrapPathError(err))
		return nil
	}
	v.files.data[file] = b
	return b
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// upstreamTLS checks one upstream_tls block as written at path: its files
// readable, the CA file holding certificates, the client certificate and
// key both given (or neither) and a matching pair.
func (v *validator) upstreamTLS(path string, u *UpstreamTLS) {
	if u == nil {
		return
	}
	if u.CAFile != "" {
		if b := v.readTLSFile(path+".ca_file", u.CAFile); b != nil {
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				v.errorf(path+".ca_file", "%s holds no PEM certificate", u.CAFile)
			}
		}
	}
	switch {
	case u.CertFile != "" && u.KeyFile == "":
		v.errorf(path+".key_file", "cert_file is set but key_file is not; give both for a client certificate, or neither")
	case u.CertFile == "" && u.KeyFile != "":
		v.errorf(path+".cert_file", "key_file is set but cert_file is not; give both for a client certificate, or neither")
	case u.CertFile != "":
		cert := v.readTLSFile(path+".cert_file", u.CertFile)
		key := v.readTLSFile(path+".key_file", u.KeyFile)
		if cert != nil && key != nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				v.errorf(path+".cert_file", "cert_file %s and key_file %s are not a certificate and its key: %v", u.CertFile, u.KeyFile, err)
			}
		}
	}
	if u.ServerName != "" && !hostnameRE.MatchString(u.ServerName) {
		v.errorf(path+".server_name", "%q is not a host name", u.ServerName)
	}
	if u.InsecureSkipVerify {
		v.warnf(path+".insecure_skip_verify", "endpoints' certificates are not verified: anyone on the path can read and change the traffic")
	}
}

// fillUpstreamTLS sets ds.EffectiveUpstreamTLS from the service's block and
// the DC's override, with the file contents read by validation. A file that
// could not be read (an error already reported) leaves its bytes nil. DCs
// without an override share one value, so what is built from it (a CA
// pool, a parsed key pair) can be built once per service.
func (v *validator) fillUpstreamTLS(ds *DCService, svc *Service) {
	if ds.UpstreamTLS == nil {
		if e, ok := v.files.shared[svc]; ok {
			ds.EffectiveUpstreamTLS = e
			return
		}
	}
	e := ds.UpstreamTLS.over(svc.UpstreamTLS)
	if e != nil {
		e.CAPEM = v.files.data[e.CAFile]
		e.CertPEM = v.files.data[e.CertFile]
		e.KeyPEM = v.files.data[e.KeyFile]
	}
	if ds.UpstreamTLS == nil {
		if v.files.shared == nil {
			v.files.shared = map[*Service]*UpstreamTLS{}
		}
		v.files.shared[svc] = e
	}
	ds.EffectiveUpstreamTLS = e
}
