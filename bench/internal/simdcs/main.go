// Command simdcs runs simulated Coopr datacenters on fixed loopback
// addresses for the manual benchmarks in bench/: one coopr-server endpoint
// per datacenter, answering GET /status like Coopr does.
//
//	go run ./bench/internal/simdcs -dc dc1=127.0.0.1:18081 -dc dc2=127.0.0.1:18082 [-control 127.0.0.1:18080]
//
// With -control, POST /dc/{name}/fault?mode=refuse|hang|slow|500|flap|blackhole|none
// breaks or heals a datacenter while a benchmark runs. It prints "ready"
// once every endpoint listens, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coopr-gslb/coopr-gslb/simulator"
)

// dcFlags collects repeated -dc name=addr flags.
type dcFlags []struct{ name, addr string }

func (d *dcFlags) String() string { return fmt.Sprint(*d) }

func (d *dcFlags) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return errors.New("want name=host:port")
	}
	*d = append(*d, struct{ name, addr string }{name, addr})
	return nil
}

func main() {
	var dcs dcFlags
	flag.Var(&dcs, "dc", "a datacenter as name=host:port (repeatable)")
	control := flag.String("control", "", "listen address of the fault control API; empty for none")
	flag.Parse()
	if len(dcs) == 0 {
		log.Fatal("simdcs: give at least one -dc name=host:port")
	}

	// Coopr partitions cluster IDs: one increment for all DCs, one start each.
	inc := 10
	for inc <= len(dcs) {
		inc *= 10
	}
	servers := map[string]*simulator.Server{}
	for i, dc := range dcs {
		s, err := simulator.Start(simulator.Options{DC: dc.name, Addr: dc.addr, IDStart: i + 1, IDIncrement: inc})
		if err != nil {
			log.Fatalf("simdcs: %v", err)
		}
		defer s.Close()
		servers[dc.name] = s
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var hs *http.Server
	if *control != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /dc/{name}/fault", func(w http.ResponseWriter, r *http.Request) {
			s := servers[r.PathValue("name")]
			if s == nil {
				http.Error(w, "unknown datacenter", http.StatusNotFound)
				return
			}
			f, err := simulator.ParseFault(r.URL.Query().Get("mode"), r.URL.Query())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.SetFault(f)
			fmt.Fprintf(w, "%s: %s\n", s.DC(), f)
		})
		hs = &http.Server{Addr: *control, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("simdcs: control: %v", err)
				stop()
			}
		}()
	}

	fmt.Println("ready")
	<-ctx.Done()
	if hs != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(shutdownCtx)
	}
}
