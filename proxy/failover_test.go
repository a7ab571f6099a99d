package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// TestFailoverUnderLoad sends GETs and POSTs (each POST with a unique
// X-Request-Id) through the proxy to simulated Coopr servers while west
// fails, with no help from health checks: the proxy alone must lose no GET,
// answer every POST with success or a clear error, and never let a POST
// reach two backends.
func TestFailoverUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault simulator.Fault
		// proxy settings: a hung DC needs a short try timeout, so that
		// GETs move on well before the client gives up.
		settings string
	}{
		{"refused", simulator.Fault{Mode: simulator.Refuse}, "{}"},
		{"hung", simulator.Fault{Mode: simulator.Hang}, "{response_header_timeout: 2s, retry: {try_timeout: 400ms}}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*simulator.Server
			start := func(dc string, idStart int) *simulator.Server {
				s, err := simulator.Start(simulator.Options{DC: dc, IDStart: idStart, IDIncrement: 10})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				servers = append(servers, s)
				return s
			}
			w1, w2, east := start("west", 1), start("west", 1), start("east", 2)
			yaml := strings.Replace(twoDC, `["{{w}}"]`, `["{{w1}}", "{{w2}}"]`, 1) +
				"proxy: " + tc.settings + "\n"
			e := newEnv(t, yaml, map[string]string{"w1": w1.Addr(), "w2": w2.Addr(), "e": east.Addr()}, envOptions{noLog: true})

			var (
				stop                        atomic.Bool
				gets, getFails              atomic.Int64
				posts, postOK, postCleanErr atomic.Int64
				ids                         atomic.Int64
				mu                          sync.Mutex
				problems                    []string
			)
			client := &http.Client{Timeout: 10 * time.Second}
			var wg sync.WaitGroup
			for worker := 0; worker < 8; worker++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						method, path := "GET", "/v2/clusters"
						var body io.Reader
						req, _ := http.NewRequest(method, e.front.URL+path, body)
						if ids.Load()%2 == 0 {
							id := fmt.Sprintf("req-%d", ids.Add(1))
							req, _ = http.NewRequest("POST", e.front.URL+path, strings.NewReader(`{"name":"`+id+`"}`))
							req.Header.Set("X-Request-Id", id)
						} else {
							ids.Add(1)
						}
						req.Host = "api.coopr.test"
						res, err := client.Do(req)
						var code int
						var text string
						if err == nil {
							b, _ := io.ReadAll(res.Body)
							res.Body.Close()
							code, text = res.StatusCode, string(b)
						}
						mu.Lock()
						switch {
						case req.Method == "GET":
							gets.Add(1)
							if code != 200 {
								getFails.Add(1)
								problems = append(problems, fmt.Sprintf("GET failed: %d %v %q", code, err, text))
							}
						case code == 200:
							posts.Add(1)
							postOK.Add(1)
						case code >= 500 && len(text) < 200 && text != "":
							posts.Add(1)
							postCleanErr.Add(1)
						default:
							posts.Add(1)
							problems = append(problems, fmt.Sprintf("POST unclear: %d %v %q", code, err, text))
						}
						mu.Unlock()
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			w1.SetFault(tc.fault)
			w2.SetFault(tc.fault)
			time.Sleep(1500 * time.Millisecond)
			stop.Store(true)
			wg.Wait()
			w1.SetFault(simulator.Fault{})
			w2.SetFault(simulator.Fault{})

			for _, p := range problems {
				t.Error(p)
			}
			seen := map[string]string{}
			for _, s := range servers {
				for _, id := range s.RequestIDs() {
					if other, dup := seen[id]; dup {
						t.Errorf("POST %s reached two backends: %s and %s", id, other, s.Addr())
					}
					seen[id] = s.Addr()
				}
			}
			t.Logf("%d GETs (%d failed), %d POSTs (%d ok, %d clear errors), east served %d",
				gets.Load(), getFails.Load(), posts.Load(), postOK.Load(), postCleanErr.Load(), east.Requests())
			if east.Requests() == 0 || gets.Load() == 0 {
				t.Fatal("no load reached east")
			}
		})
	}
}
