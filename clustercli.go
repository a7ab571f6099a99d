package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// clusterLine is what `coopr-gslb status` reads of GET /api/v1/cluster.
type clusterLine struct {
	Self    string `json:"self"`
	Quorum  any    `json:"quorum"`
	Alone   bool   `json:"alone"`
	DNSView string `json:"dns_view"`
	Members []struct {
		Name          string `json:"name"`
		State         string `json:"state"`
		ConfigDiffers bool   `json:"config_differs"`
	} `json:"members"`
	Outvoted []string `json:"outvoted"`
}

// printClusterLine adds the cluster in one line to `coopr-gslb status`:
// nothing for an instance without a cluster (the API answers 404).
func printClusterLine(w io.Writer, c *apiClient) {
	var cl clusterLine
	if err := c.do(http.MethodGet, "/api/v1/cluster", nil, &cl); err != nil || cl.Self == "" {
		return
	}
	alive, differ := 0, 0
	var others []string
	for _, m := range cl.Members {
		if m.State == "alive" {
			alive++
		}
		if m.ConfigDiffers {
			differ++
		}
		if m.Name != cl.Self {
			others = append(others, m.Name+" "+m.State)
		}
	}
	line := fmt.Sprintf("cluster: %s, %d/%d members alive (%s), quorum %v, DNS from the %s view", cl.Self, alive, len(cl.Members), orNone(strings.Join(others, ", ")), cl.Quorum, cl.DNSView)
	if cl.Alone {
		line += ", ALONE"
	}
	if differ > 0 {
		line += fmt.Sprintf(", %d with a DIFFERENT config", differ)
	}
	if len(cl.Outvoted) > 0 {
		line += ", outvoted on " + strings.Join(cl.Outvoted, " ")
	}
	fmt.Fprintln(w, "\n"+line)
}
