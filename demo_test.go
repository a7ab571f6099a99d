package main

import (
	"strings"
	"testing"
)

func TestDemoPrintoutNamesBusyPorts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		asked, got demoAddrs
		want, not  []string
	}{
		{"all free",
			demoAddrs{"127.0.0.1:8080", "127.0.0.1:8053", "127.0.0.1:9090", "127.0.0.1:9099"},
			demoAddrs{"127.0.0.1:8080", "127.0.0.1:8053", "127.0.0.1:9090", "127.0.0.1:9099"},
			[]string{"  proxy           http://127.0.0.1:8080\n", "  status page     http://127.0.0.1:9090/\n"},
			[]string{"was busy"}},
		{"all busy",
			demoAddrs{"127.0.0.1:8080", "127.0.0.1:8053", "127.0.0.1:9090", "127.0.0.1:9099"},
			demoAddrs{"127.0.0.1:41234", "127.0.0.1:41235", "127.0.0.1:41236", "127.0.0.1:41237"},
			[]string{
				"  proxy           http://127.0.0.1:41234   (127.0.0.1:8080 was busy)\n",
				"  DNS             127.0.0.1:41235 (UDP and TCP), zone coopr.example.com.   (127.0.0.1:8053 was busy)\n",
				"  status page     http://127.0.0.1:41236/   (127.0.0.1:9090 was busy)\n",
				"  simulator       http://127.0.0.1:41237/   (JSON of every simulated endpoint)   (127.0.0.1:9099 was busy)\n",
			}, nil},
		{"port 0 and another host name",
			demoAddrs{"127.0.0.1:0", "localhost:8053", "127.0.0.1:9090", "127.0.0.1:9099"},
			demoAddrs{"127.0.0.1:41234", "127.0.0.1:8053", "127.0.0.1:9090", "127.0.0.1:9099"},
			[]string{"  proxy           http://127.0.0.1:41234\n"},
			[]string{"was busy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printDemo(&b, tc.got, tc.asked, "/tmp/demo.yaml", "tok")
			out := b.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("printout lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("printout has %q:\n%s", n, out)
				}
			}
		})
	}
}
