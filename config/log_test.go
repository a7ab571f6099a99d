package config

import (
	"strings"
	"testing"
)

func TestLogAndAccessLogKeys(t *testing.T) {
	for _, tc := range []struct {
		name, add string
		want      string // substring of a problem; "" for a valid file
		format    string
		level     string
		on        bool
		file      string
	}{
		{"defaults", "", "", "text", "info", true, ""},
		{"json debug", "log: {format: json, level: debug}\n", "", "json", "debug", true, ""},
		{"access log off", "proxy: {access_log: false}\n", "", "text", "info", false, ""},
		{"access log file", "proxy: {access_log: /var/log/coopr-gslb/access.log}\n", "", "text", "info", true, "/var/log/coopr-gslb/access.log"},
		{"bad format", "log:\n  format: logfmt\n", `config.yaml:31: log.format: "logfmt" is not a log format (want text or json)`, "", "", false, ""},
		{"bad level", "log:\n  level: verbose\n", `config.yaml:31: log.level: "verbose" is not a log level (want debug, info, warn or error)`, "", "", false, ""},
		{"unknown log key", "log:\n  colour: true\n", `config.yaml:31: log.colour: unknown field "colour" (known: format, level)`, "", "", false, ""},
		{"access log list", "proxy:\n  access_log: [a]\n", `config.yaml:31: proxy.access_log: want true, false or a file path`, "", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, ps, err := Parse([]byte(minimal + tc.add))
			if tc.want != "" {
				if err == nil {
					t.Fatalf("want an error containing %q, got none", tc.want)
				}
				for _, p := range ps {
					if strings.Contains(p.String(), tc.want) {
						return
					}
				}
				t.Fatalf("no problem contains %q; got:\n%v", tc.want, ps)
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log.Format != tc.format || cfg.Log.Level != tc.level {
				t.Errorf("log %+v, want format %s level %s", cfg.Log, tc.format, tc.level)
			}
			if *cfg.Proxy.AccessLog != tc.on || cfg.Proxy.AccessLogFile != tc.file {
				t.Errorf("access log on=%v file=%q, want %v %q", *cfg.Proxy.AccessLog, cfg.Proxy.AccessLogFile, tc.on, tc.file)
			}
		})
	}
}
