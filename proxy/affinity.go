package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// pinContext separates affinity MACs from any other use of the key.
const pinContext = "coopr-gslb affinity v1\x00"

// routeRequest fills st.order from routing.Service.Route, the one routing
// function the DNS server and explain call too: the DC a valid affinity
// cookie pins the session to, the shard owner and slow start are decided
// there. A pin can only choose among DCs the decision offers, or a softly
// drained DC before its deadline (whose healthy endpoints then serve), so a
// client cannot steer itself anywhere the policy would not send it. ok is
// false for a write to a shard no DC may write now.
func (st *reqState) routeRequest() (ans routing.Answer, ok bool) {
	sv, r := st.sv, st.in
	req := routing.Request{Client: st.client, Now: st.p.now(), Write: !isRead(r.Method)}
	if sv.affinity {
		if c, err := r.Cookie(st.v.cookieName); err == nil {
			if st.pin, st.pinValid = verifyPin(st.p.key, c.Value); st.pinValid {
				req.Pin = st.pin
			}
		}
	}
	if sv.shardMode != shardOff {
		req.ClusterID, req.HasClusterID = routing.ClusterID(r.URL.Path)
	}
	ans = sv.svc.Route(req, st.targetBuf[:0])
	if ans.ShardRefused {
		return ans, false
	}
	st.order = st.orderBuf[:0]
	st.tried = st.triedBuf[:0]
	for i, t := range ans.Proxy {
		tv := sv.target(t)
		if tv == nil {
			continue // a DC the view lacks
		}
		eps := tv.eps
		if i == 0 && ans.Pinned && t.Status.State == routing.StateDrained {
			eps = tv.pinnedEps
		}
		st.order = append(st.order, orderEntry{tv: tv, eps: eps})
	}
	if ans.Shard != nil {
		if shv := sv.shardViewOf(ans.Shard); shv != nil && shv.owner != nil {
			st.shard = shv
			shv.routed.Inc()
		}
	}
	return ans, true
}

// cookie returns the Set-Cookie value that pins a session to tv's DC.
func (tv *targetView) cookie(secure bool) string {
	if secure {
		return tv.cookies[1]
	}
	return tv.cookies[0]
}

// pinCookie renders the affinity cookie for dc. It is a session cookie: a
// pin should not outlive the browser session it serves.
func pinCookie(name string, key []byte, dc string, secure bool) string {
	c := http.Cookie{
		Name:     name,
		Value:    signPin(key, dc),
		Path:     "/",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	return c.String()
}

// signPin returns the cookie value naming dc: "dc.MAC".
func signPin(key []byte, dc string) string {
	return dc + "." + base64.RawURLEncoding.EncodeToString(pinMAC(key, dc))
}

// verifyPin returns the DC a cookie value names, if its MAC is right.
func verifyPin(key []byte, value string) (string, bool) {
	i := strings.LastIndexByte(value, '.')
	if i <= 0 || len(value)-i-1 != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return "", false
	}
	var sig [sha256.Size]byte
	if n, err := base64.RawURLEncoding.Decode(sig[:], []byte(value[i+1:])); err != nil || n != len(sig) {
		return "", false
	}
	dc := value[:i]
	if !hmac.Equal(sig[:], pinMAC(key, dc)) {
		return "", false
	}
	return dc, true
}

func pinMAC(key []byte, dc string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(pinContext))
	m.Write([]byte(dc))
	return m.Sum(nil)
}

// affinityKeyName is the file LoadAffinityKey keeps a generated key in.
const affinityKeyName = "affinity.key"

// LoadAffinityKey returns the key that signs affinity cookies, as
// proxy.affinity_key_file and admin.state_dir say: the contents of file if
// it is set (at least 16 bytes, surrounding white space ignored); else the
// key kept in stateDir, generated and written there (mode 0600) on first
// use so that pins survive restarts; else nil, for which New generates a key
// that lives as long as the process.
func LoadAffinityKey(file, stateDir string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("proxy: affinity key: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) < 16 {
			return nil, fmt.Errorf("proxy: affinity key %s: %d bytes is too short (want at least 16)", file, len(b))
		}
		return b, nil
	}
	if stateDir == "" {
		return nil, nil
	}
	path := filepath.Join(stateDir, affinityKeyName)
	b, err := os.ReadFile(path)
	if err == nil && len(bytes.TrimSpace(b)) >= 16 {
		return bytes.TrimSpace(b), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("proxy: affinity key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	key := []byte(hex.EncodeToString(raw))
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy: affinity key: %w", err)
	}
	// Write then rename, so a crash never leaves a truncated key behind.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(key, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("proxy: affinity key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("proxy: affinity key: %w", err)
	}
	return key, nil
}
