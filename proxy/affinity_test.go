package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// pinOf returns the DC named by the affinity cookie an answer sets, or "".
func pinOf(t *testing.T, hdr http.Header) string {
	t.Helper()
	res := http.Response{Header: hdr}
	for _, c := range res.Cookies() {
		if c.Name == "coopr_gslb_dc" {
			dc, ok := verifyPin(testKey, c.Value)
			if !ok {
				t.Fatalf("the proxy set a cookie it cannot verify: %q", c.Value)
			}
			return dc
		}
	}
	return ""
}

func withPin(value string) http.Header {
	return http.Header{"Cookie": {"coopr_gslb_dc=" + value}}
}

func TestAffinity(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC+"    affinity: cookie\n", map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
	eastPin := withPin(signPin(testKey, "east"))

	expect := func(t *testing.T, hdr http.Header, wantDC, wantCookie string) {
		t.Helper()
		code, body, rh := e.call("GET", "api.coopr.test", "/ui", nil, hdr)
		if code != 200 || body != wantDC {
			t.Fatalf("served by %q (%d), want %s", body, code, wantDC)
		}
		if got := pinOf(t, rh); got != wantCookie {
			t.Fatalf("cookie pins %q, want %q", got, wantCookie)
		}
	}

	t.Run("first response pins", func(t *testing.T) {
		_, _, rh := e.call("GET", "api.coopr.test", "/", nil, nil)
		sc := rh.Get("Set-Cookie")
		for _, attr := range []string{"coopr_gslb_dc=west.", "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(sc, attr) {
				t.Errorf("Set-Cookie %q lacks %s", sc, attr)
			}
		}
		if strings.Contains(sc, "Secure") {
			t.Errorf("Secure on plain HTTP: %q", sc)
		}
	})
	t.Run("pinned stays", func(t *testing.T) {
		expect(t, eastPin, "east", "")
		expect(t, withPin(signPin(testKey, "west")), "west", "")
	})
	t.Run("down moves at once", func(t *testing.T) {
		e.setUp("east", "api", east.addr(), false)
		defer e.setUp("east", "api", east.addr(), true)
		expect(t, eastPin, "west", "west")
	})
	t.Run("hard drain moves at once", func(t *testing.T) {
		if err := e.engine.Drain("east", routing.Drain{Mode: "hard", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		defer e.engine.Undrain("east", "test")
		expect(t, eastPin, "west", "west")
	})
	t.Run("soft drain holds pinned until the deadline", func(t *testing.T) {
		if err := e.engine.Drain("east", routing.Drain{Mode: "soft", Deadline: e.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		defer e.engine.Undrain("east", "test")
		expect(t, eastPin, "east", "")
		expect(t, nil, "west", "west") // new sessions go elsewhere
		e.clock.Advance(2 * time.Minute)
		expect(t, eastPin, "west", "west")
	})
	t.Run("soft drain of an unhealthy DC moves", func(t *testing.T) {
		if err := e.engine.Drain("east", routing.Drain{Mode: "soft", Deadline: e.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		defer e.engine.Undrain("east", "test")
		e.setUp("east", "api", east.addr(), false)
		defer e.setUp("east", "api", east.addr(), true)
		expect(t, eastPin, "west", "west")
	})
	t.Run("forged cookies are ignored", func(t *testing.T) {
		for _, v := range []string{
			"east",
			"east.",
			"east.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			signPin([]byte("another key, another key, another"), "east"),
			strings.Replace(signPin(testKey, "east"), "east.", "west.", 1),
			"%%%garbage",
		} {
			expect(t, withPin(v), "west", "west")
		}
	})
	t.Run("pin follows failover", func(t *testing.T) {
		// East is pinned but refuses connections: the request moves to west
		// without an error and the cookie follows.
		e2 := newEnv(t, twoDC+"    affinity: cookie\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{})
		_, body, rh := e2.call("GET", "api.coopr.test", "/", nil, eastPin)
		if body != "west" || pinOf(t, rh) != "west" {
			t.Fatalf("served by %q, cookie %q", body, pinOf(t, rh))
		}
	})
}

func TestAffinitySecureOnTLS(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	e := newEnv(t, twoDC+"    affinity: cookie\n", map[string]string{"w": west.addr(), "e": closedAddr(t)}, envOptions{tls: true})
	_, _, rh := e.call("GET", "api.coopr.test", "/", nil, nil)
	if sc := rh.Get("Set-Cookie"); !strings.Contains(sc, "Secure") {
		t.Fatalf("Set-Cookie over TLS lacks Secure: %q", sc)
	}
}

func TestAffinityOnlyWhenConfigured(t *testing.T) {
	west := newBackend(t, "west", ok("west"))
	east := newBackend(t, "east", ok("east"))
	e := newEnv(t, twoDC, map[string]string{"w": west.addr(), "e": east.addr()}, envOptions{})
	_, body, rh := e.call("GET", "api.coopr.test", "/", nil, withPin(signPin(testKey, "east")))
	if body != "west" || rh.Get("Set-Cookie") != "" {
		t.Fatalf("a service without affinity honoured or set a pin: %q %v", body, rh)
	}
}
