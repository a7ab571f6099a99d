package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	settings := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name, ldflags string
		bi            debug.BuildInfo
		want          Build
	}{
		{"ldflags win", "v1.2.3", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.9.0"}, Settings: settings("abc", "false")},
			Build{"v1.2.3", "abc", "go1.26"}},
		{"go install records the module version", "dev", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "v0.9.0"}},
			Build{"v0.9.0", "unknown", "go1.26"}},
		{"checkout build is dev with its revision", "dev", debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: settings("abc", "true")},
			Build{"dev", "abc+dirty", "go1.26"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromBuildInfo(tc.ldflags, &tc.bi); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
