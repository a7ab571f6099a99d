package admin

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
)

// TokenEnv names the environment variable that adds an admin token.
const TokenEnv = "COOPR_GSLB_ADMIN_TOKEN"

// Tokens are the bearer tokens allowed to change things, by name. The name is
// recorded as who made a change. The zero value allows nothing.
type Tokens struct {
	byName map[string]string
}

// LoadTokens reads tokens from file ("" for none), one per line as "NAME
// TOKEN" or a bare "TOKEN" (named "admin"); blank lines and # comments are
// skipped. A non-empty env adds a token named "env".
func LoadTokens(file, env string) (Tokens, error) {
	t := Tokens{byName: map[string]string{}}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return t, fmt.Errorf("admin.token_file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			switch len(fields) {
			case 1:
				t.byName["admin"] = fields[0]
			case 2:
				t.byName[fields[0]] = fields[1]
			default:
				return t, fmt.Errorf("admin.token_file %s:%d: want \"NAME TOKEN\" or \"TOKEN\"", file, n)
			}
		}
		if err := sc.Err(); err != nil {
			return t, fmt.Errorf("admin.token_file: %w", err)
		}
	}
	if env != "" && !slices.Contains(slices.Collect(maps.Values(t.byName)), env) {
		t.byName["env"] = env
	}
	return t, nil
}

// Empty reports whether no token is configured.
func (t Tokens) Empty() bool { return len(t.byName) == 0 }

// who returns the name of the token the request carries, if it is valid.
func (t Tokens) who(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	given, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || given == "" {
		return "", false
	}
	// Compare against every token so the time taken does not say which matched.
	name, found := "", false
	for n, tok := range t.byName {
		if subtle.ConstantTimeCompare([]byte(given), []byte(tok)) == 1 {
			name, found = n, true
		}
	}
	return name, found
}

// requireToken wraps a mutation: without a valid bearer token it answers 401
// and the handler never runs.
func (s *Server) requireToken(h func(w http.ResponseWriter, r *http.Request, who string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.opts.Tokens.who(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="coopr-gslb"`)
			msg := "missing or wrong token: send \"Authorization: Bearer <token>\" with a token from admin.token_file or " + TokenEnv
			if s.opts.Tokens.Empty() {
				msg = "no admin token is configured, so nothing can be changed: set admin.token_file or " + TokenEnv
			}
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		h(w, r, who)
	}
}

// requireRead wraps a read: when reads need a token, it checks one.
func (s *Server) requireRead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.ReadRequiresToken {
			if _, ok := s.opts.Tokens.who(r); !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="coopr-gslb"`)
				writeError(w, http.StatusUnauthorized, "reads need a token here (admin.read_requires_token): send \"Authorization: Bearer <token>\"")
				return
			}
		}
		h(w, r)
	}
}
