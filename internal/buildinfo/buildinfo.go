// Package buildinfo names the running binary: its version, VCS revision and
// Go version, from the build information Go records (ldflags may override
// the version).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Build names this binary: its version, VCS revision and Go version. An
// -ldflags "-X main.version=..." value wins; otherwise the module version
// `go install ...@vX` records, else "dev". The revision comes from the VCS
// stamp `go build` adds in a checkout ("+dirty" when it had local changes).
type Build struct {
	Version, Revision, GoVersion string
}

// Read reads the build information of the running binary; version is the
// -ldflags "-X" value, if any.
func Read(version string) Build {
	b := Build{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	return FromBuildInfo(version, bi)
}

// FromBuildInfo is Read over given build information.
func FromBuildInfo(ldflagsVersion string, bi *debug.BuildInfo) Build {
	b := Build{Version: ldflagsVersion, Revision: "unknown", GoVersion: bi.GoVersion}
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	if b.Version == "" || b.Version == "dev" {
		b.Version = "dev"
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "+dirty"
	}
	return b
}

// String is the one-line form the version command and the log print.
func (b Build) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", b.Version, b.Revision, b.GoVersion)
}

// Labels are coopr_gslb_build_info's labels.
func (b Build) Labels() map[string]string {
	return map[string]string{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}
}
