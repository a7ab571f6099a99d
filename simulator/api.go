package simulator

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxAPIBody bounds API request bodies; real cluster specs are small.
const maxAPIBody = 1 << 20

// Cluster is the simulator's view of a Coopr cluster, as the API returns it.
type Cluster struct {
	ID         string          `json:"id"`
	Name       string          `json:"name,omitempty"`
	Status     string          `json:"status"`
	Action     string          `json:"action,omitempty"`
	DC         string          `json:"dc"`
	OwnerID    string          `json:"ownerId,omitempty"`
	TenantID   string          `json:"tenantId,omitempty"`
	CreateTime int64           `json:"createTime"`
	Request    json.RawMessage `json:"request,omitempty"`
	Config     json.RawMessage `json:"config,omitempty"`
}

// clusterStore stands for one DC's database and ID sequence. Its Cluster
// values are replaced, never mutated, so copies handed out stay valid.
type clusterStore struct {
	dc       string
	mu       sync.Mutex
	next     int
	inc      int
	clusters map[string]Cluster
}

func newClusterStore(dc string, start, inc int) *clusterStore {
	return &clusterStore{dc: dc, next: start, inc: inc, clusters: make(map[string]Cluster)}
}

// FormatClusterID renders an ID the way Coopr does: eight zero-padded digits.
func FormatClusterID(n int) string { return fmt.Sprintf("%08d", n) }

func (st *clusterStore) create(c Cluster) Cluster {
	st.mu.Lock()
	defer st.mu.Unlock()
	c.ID = FormatClusterID(st.next)
	st.next += st.inc
	c.DC = st.dc
	c.Status = "active"
	c.Action = "cluster_create"
	c.CreateTime = time.Now().UnixMilli()
	st.clusters[c.ID] = c
	return c
}

func (st *clusterStore) get(id string) (Cluster, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.clusters[id]
	return c, ok
}

func (st *clusterStore) list() []Cluster {
	st.mu.Lock()
	out := make([]Cluster, 0, len(st.clusters))
	for _, c := range st.clusters {
		out = append(out, c)
	}
	st.mu.Unlock()
	slices.SortFunc(out, func(a, b Cluster) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// update applies fn to a copy of the cluster and stores the result.
func (st *clusterStore) update(id string, fn func(*Cluster)) (Cluster, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.clusters[id]
	if !ok {
		return Cluster{}, false
	}
	fn(&c)
	st.clusters[id] = c
	return c, true
}

func (st *clusterStore) remove(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.clusters[id]
	delete(st.clusters, id)
	return ok
}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v2/clusters", s.handleCreate)
	mux.HandleFunc("GET /v2/clusters", s.handleList)
	mux.HandleFunc("GET /v2/clusters/{id}", s.handleGet)
	mux.HandleFunc("DELETE /v2/clusters/{id}", s.handleDelete)
	mux.HandleFunc("POST /v2/clusters/{id}", s.handleReconfigure)
	mux.HandleFunc("GET /v2/clusters/{id}/config", s.handleGetConfig)
	mux.HandleFunc("PUT /v2/clusters/{id}/config", s.handlePutConfig)
	mux.HandleFunc("GET /v2/clusters/{id}/status", s.handleClusterStatus)
	for action, status := range map[string]string{"abort": "incomplete", "pause": "paused", "resume": "active"} {
		mux.HandleFunc("POST /v2/clusters/{id}/"+action, s.clusterAction("cluster_"+action, status))
	}
}

// readJSONBody returns the body if it is empty or valid JSON; Coopr rejects
// anything else with 400.
func readJSONBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, true
	}
	if !json.Valid(b) {
		writeError(w, http.StatusBadRequest, "body is not valid JSON")
		return nil, false
	}
	return b, true
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	body, ok := readJSONBody(w, r)
	if !ok {
		return
	}
	var spec struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(body, &spec) // a non-object body simply has no name
	c := s.store.create(Cluster{
		Name:     spec.Name,
		OwnerID:  r.Header.Get("Coopr-UserID"),
		TenantID: r.Header.Get("Coopr-TenantID"),
		Request:  body,
	})
	writeJSON(w, http.StatusOK, map[string]string{"id": c.ID})
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.store.list())
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	c, ok := s.store.get(r.PathValue("id"))
	if !ok {
		writeNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	if !s.store.remove(r.PathValue("id")) {
		writeNotFound(w, r.PathValue("id"))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleReconfigure(w http.ResponseWriter, r *http.Request) {
	s.updateConfig(w, r, "cluster_configure")
}

func (s *Server) handlePutConfig(w http.ResponseWriter, r *http.Request) {
	s.updateConfig(w, r, "cluster_configure")
}

func (s *Server) updateConfig(w http.ResponseWriter, r *http.Request, action string) {
	body, ok := readJSONBody(w, r)
	if !ok {
		return
	}
	c, ok := s.store.update(r.PathValue("id"), func(c *Cluster) {
		c.Config = body
		c.Action = action
		c.Status = "active"
	})
	if !ok {
		writeNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) handleGetConfig(w http.ResponseWriter, r *http.Request) {
	c, ok := s.store.get(r.PathValue("id"))
	if !ok {
		writeNotFound(w, r.PathValue("id"))
		return
	}
	cfg := c.Config
	if cfg == nil {
		cfg = json.RawMessage("{}")
	}
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) handleClusterStatus(w http.ResponseWriter, r *http.Request) {
	c, ok := s.store.get(r.PathValue("id"))
	if !ok {
		writeNotFound(w, r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"clusterid":    c.ID,
		"status":       c.Status,
		"action":       c.Action,
		"actionstatus": "complete",
	})
}

func (s *Server) clusterAction(action, status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.store.update(r.PathValue("id"), func(c *Cluster) {
			c.Action = action
			c.Status = status
		})
		if !ok {
			writeNotFound(w, r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, c)
	}
}

func writeNotFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, "cluster "+id+" not found")
}

// enforceOwnership refuses writes to clusters of another DC's partition, as
// Coopr's option-4 replication requires: only the shard owner may write.
func (s *Server) enforceOwnership(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWrite(r.Method) {
			if id, ok := clusterIDFromPath(r.URL.Path); ok && !s.owns(id) {
				s.conflicts.Add(1)
				owner := PartitionOf(id, s.idInc)
				writeJSON(w, http.StatusConflict, map[string]any{
					"error": fmt.Sprintf("cluster %s belongs to partition %d (id mod %d); %s owns partition %d",
						FormatClusterID(id), owner, s.idInc, s.dc, s.idStart%s.idInc),
					"id":              FormatClusterID(id),
					"owner_partition": owner,
					"id_increment":    s.idInc,
					"dc":              s.dc,
				})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// PartitionOf returns the partition an ID belongs to for a given increment:
// the start, modulo increment, of the DC that created it.
func PartitionOf(id, increment int) int {
	if increment <= 0 {
		return 0
	}
	return id % increment
}

func (s *Server) owns(id int) bool {
	p := PartitionOf(id, s.idInc)
	if p == PartitionOf(s.idStart, s.idInc) {
		return true
	}
	s.ownedMu.RLock()
	defer s.ownedMu.RUnlock()
	for _, start := range s.owned {
		if p == PartitionOf(start, s.idInc) {
			return true
		}
	}
	return false
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
		return true
	}
	return false
}

// clusterIDFromPath extracts the numeric cluster ID of /v2/clusters/{id}...
func clusterIDFromPath(p string) (int, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/clusters/")
	if !ok {
		return 0, false
	}
	seg, _, _ := strings.Cut(rest, "/")
	if seg == "" || len(seg) > 18 || strings.TrimLeft(seg, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(seg)
	return n, err == nil
}
