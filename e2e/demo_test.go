package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemoSaysWhichBusyPortsItReplaced occupies the demo's proxy, DNS
// (UDP and TCP), admin and control ports first, as another program on
// 8080/8053/9090 would, and sees the demo serve on other ports and its
// printout name each busy address it replaced.
func TestDemoSaysWhichBusyPortsItReplaced(t *testing.T) {
	hold := func(network string) string {
		t.Helper()
		for range 10 {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if network == "udp" {
				pc, err := net.ListenPacket("udp", ln.Addr().String())
				if err != nil { // that UDP port is someone else's: another one
					ln.Close()
					continue
				}
				t.Cleanup(func() { pc.Close() })
			}
			t.Cleanup(func() { ln.Close() })
			return ln.Addr().String()
		}
		t.Fatal("no port free for both TCP and UDP")
		return ""
	}
	httpAddr, dnsAddr, adminAddr, controlAddr := hold("tcp"), hold("udp"), hold("tcp"), hold("tcp")
	cmd := exec.Command(binary, "demo", "-http", httpAddr, "-dns", dnsAddr, "-admin", adminAddr, "-control", controlAddr)
	cmd.Env = append(os.Environ(), "COOPR_GSLB_ADMIN_TOKEN=demo-token")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan []string, 1)
	go func() {
		var got []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			got = append(got, sc.Text())
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				break
			}
		}
		lines <- got
		for sc.Scan() {
		}
	}()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	var got []string
	select {
	case got = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("no printout; stderr:\n%s", stderr.String())
	}
	printout := strings.Join(got, "\n")
	for _, tc := range []struct{ label, asked string }{
		{"proxy", httpAddr}, {"DNS", dnsAddr}, {"status page", adminAddr}, {"simulator", controlAddr},
	} {
		var line string
		for _, l := range got {
			if strings.HasPrefix(strings.TrimSpace(l), tc.label+" ") {
				line = l
			}
		}
		if !strings.HasSuffix(line, "("+tc.asked+" was busy)") {
			t.Errorf("%s line %q does not say %s was busy:\n%s", tc.label, line, tc.asked, printout)
		}
		if f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), tc.label)); len(f) == 0 || strings.Contains(f[0], tc.asked) {
			t.Errorf("%s line %q: served on the busy address", tc.label, line)
		}
	}
}
