package h1server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

var requestSeeds = []string{
	"GET /v2/clusters HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk\r\n\r\n",
	"GET /v2/clusters?status=active&x=%20y HTTP/1.1\r\nHost: api.example.com\r\nCoopr-UserID: admin\r\nCoopr-TenantID: superadmin\r\nCoopr-ApiKey: k\r\nAccept: */*\r\n\r\n",
	"POST /v2/clusters HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nContent-Type: application/json\r\n\r\n{\"name\":\"c\"}GET / HTTP/1.1\r\n\r\n",
	"POST /v2/clusters HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nshort",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  007 \r\n\r\n1234567",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +7\r\n\r\n1234567",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Close\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: a\r\nx-lower: 1\r\nX-LOUD: 2\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
	"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Ctl: a\x01b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Tab: \ta\tb\t\r\nX-Obs: caf\xe9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n:novalue\r\n\r\n",
	"GET http://a/b HTTP/1.1\r\nHost: b\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n",
	"",
}

// FuzzReadRequestFast checks that whenever the fast reader takes a request,
// http.ReadRequest reads the same bytes to the same request, body and rest
// included; and that when it declines, it consumed nothing.
func FuzzReadRequestFast(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		_, _ = br.Peek(1) // the server peeks before it reads a request
		before := br.Buffered()
		fast, ok := readRequestFast(br)
		if !ok {
			if br.Buffered() != before {
				t.Fatalf("declined but consumed %d bytes", before-br.Buffered())
			}
			return
		}
		want, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096))
		if err != nil {
			t.Fatalf("fast reader took a request net/http refuses (%v): %q", err, data)
		}
		compareRequests(t, fast, want)
		gotBody, gotErr := io.ReadAll(fast.Body)
		wantBody, wantErr := io.ReadAll(want.Body)
		if !bytes.Equal(gotBody, wantBody) || !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) {
			t.Fatalf("body %q, %v; net/http %q, %v", gotBody, gotErr, wantBody, wantErr)
		}
	})
}

func compareRequests(t *testing.T, got, want *http.Request) {
	t.Helper()
	type view struct {
		Method, Proto, Host, RequestURI string
		Major, Minor                    int
		URL                             string
		URLFields                       any
		Header                          http.Header
		ContentLength                   int64
		Close                           bool
		TransferEncoding                []string
		Trailer                         http.Header
		NoBody                          bool
	}
	of := func(r *http.Request) view {
		return view{r.Method, r.Proto, r.Host, r.RequestURI, r.ProtoMajor, r.ProtoMinor, r.URL.String(), *r.URL,
			r.Header, r.ContentLength, r.Close, r.TransferEncoding, r.Trailer, r.Body == http.NoBody}
	}
	if g, w := of(got), of(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("fast reader:\n%+v\nnet/http:\n%+v", g, w)
	}
}

func TestReadRequestFastTakesTheCommonCase(t *testing.T) {
	for _, raw := range []string{requestSeeds[0], requestSeeds[1], requestSeeds[2], requestSeeds[14]} {
		br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
		br.Peek(1)
		if _, ok := readRequestFast(br); !ok {
			t.Errorf("declined %q", raw)
		}
	}
}

func TestReadRequestFastDeclinesTheRest(t *testing.T) {
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n", // header not complete yet
	} {
		br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
		br.Peek(1)
		if _, ok := readRequestFast(br); ok {
			t.Errorf("took %q", raw)
		}
	}
}

func BenchmarkReadRequest(b *testing.B) {
	raw := []byte(requestSeeds[1])
	r := bytes.NewReader(raw)
	br := bufio.NewReaderSize(r, 4096)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(raw)
			br.Reset(r)
			br.Peek(1)
			if _, ok := readRequestFast(br); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(raw)
			br.Reset(r)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}
