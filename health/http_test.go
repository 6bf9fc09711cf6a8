package health

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder remembers what the last check request looked like.
type recorder struct {
	mu         sync.Mutex
	path, host string
	sni        string
	redirected bool
}

func (rec *recorder) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.path, rec.host = r.URL.RequestURI(), r.Host
		if r.TLS != nil {
			rec.sni = r.TLS.ServerName
		}
		if r.URL.Path == "/moved-here" {
			rec.redirected = true
		}
		rec.mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("all ok"))
		case "/503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/moved-here", http.StatusFound)
		case "/big":
			// The marker sits past the 64 KiB a check reads.
			w.Write([]byte(strings.Repeat("x", 70<<10) + "MARKER"))
		default:
			w.Write([]byte("hello"))
		}
	})
}

func TestHTTPCheck(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec.handler())
	defer srv.Close()
	addr := addrOf(t, srv.Listener.Addr())

	tests := []struct {
		name       string
		spec       Spec
		wantOK     bool
		wantReason string
	}{
		{"200 default path", Spec{Type: TypeHTTP}, true, "status 200"},
		{"503 fails", Spec{Type: TypeHTTP, Path: "/503"}, false, "status 503"},
		{"503 accepted when expected", Spec{Type: TypeHTTP, Path: "/503", ExpectStatus: []StatusRange{{503, 503}}}, true, "status 503"},
		{"204 outside expect list", Spec{Type: TypeHTTP, Path: "/204", ExpectStatus: []StatusRange{{200, 200}}}, false, "status 204"},
		{"redirect is an answer, not followed", Spec{Type: TypeHTTP, Path: "/redirect"}, true, "status 302"},
		{"body contains", Spec{Type: TypeHTTP, Path: "/ok", ExpectBody: "ok"}, true, "status 200"},
		{"body does not contain", Spec{Type: TypeHTTP, Path: "/", ExpectBody: "ok"}, false, `body does not contain "ok"`},
		{"body read is bounded", Spec{Type: TypeHTTP, Path: "/big", ExpectBody: "MARKER"}, false, `body does not contain "MARKER"`},
		{"status checked before body", Spec{Type: TypeHTTP, Path: "/503", ExpectBody: "ok"}, false, "status 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checkOnce(t, addr, tt.spec)
			if res.OK != tt.wantOK || res.Reason != tt.wantReason {
				t.Fatalf("check = %+v, want OK=%v reason %q", res, tt.wantOK, tt.wantReason)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.redirected {
		t.Error("the check followed a redirect")
	}
}

func TestHTTPCheckSendsPathQueryAndHost(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec.handler())
	defer srv.Close()
	res := checkOnce(t, addrOf(t, srv.Listener.Addr()), Spec{Type: TypeHTTP, Path: "/healthz?full=1", Host: "www.example.com"})
	if !res.OK {
		t.Fatalf("check = %+v", res)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.path != "/healthz?full=1" || rec.host != "www.example.com" {
		t.Errorf("server saw path %q host %q", rec.path, rec.host)
	}
}

// TestHTTPCheckFreshConnectionEachTime: no keep-alive reuse, so every check
// measures a real connect to the server.
func TestHTTPCheckFreshConnectionEachTime(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer((&recorder{}).handler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := addrOf(t, srv.Listener.Addr())
	for range 3 {
		if res := checkOnce(t, addr, Spec{Type: TypeHTTP}); !res.OK {
			t.Fatalf("check = %+v", res)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("3 checks used %d connections, want 3", n)
	}
}

func TestHTTPCheckFailures(t *testing.T) {
	hang := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(hang) // runs first: lets the handler return so Close does not wait

	tests := []struct {
		name       string
		addrSpec   func() (Spec, string)
		wantReason string
	}{
		{"refused", func() (Spec, string) { return Spec{Type: TypeHTTP}, closedTCPPort(t).String() }, "connect refused"},
		{"server never answers", func() (Spec, string) {
			return Spec{Type: TypeHTTP, Timeout: 300 * time.Millisecond}, stuck.Listener.Addr().String()
		}, "timeout after 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, addr := tt.addrSpec()
			res := checkOnce(t, mustAddrPort(t, addr), spec)
			if res.OK || res.Reason != tt.wantReason {
				t.Fatalf("check = %+v, want failed with %q", res, tt.wantReason)
			}
		})
	}
}

func TestHTTPSCheck(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(rec.handler())
	srv.TLS = &tls.Config{}
	srv.Config.ErrorLog = quietLog() // the refused handshake is expected
	srv.StartTLS()                   // self-signed: unknown to the checker's roots
	defer srv.Close()
	addr := addrOf(t, srv.Listener.Addr())

	tests := []struct {
		name       string
		spec       Spec
		wantOK     bool
		wantReason string
		wantSNI    string
	}{
		{"skip verify", Spec{Type: TypeHTTPS, TLSSkipVerify: true}, true, "status 200", ""},
		{"verify fails on self-signed", Spec{Type: TypeHTTPS}, false, "tls: certificate signed by unknown authority", ""},
		{"sni sent", Spec{Type: TypeHTTPS, TLSSkipVerify: true, SNI: "api.example.com"}, true, "status 200", "api.example.com"},
		{"host is the sni fallback", Spec{Type: TypeHTTPS, TLSSkipVerify: true, Host: "www.example.com:443"}, true, "status 200", "www.example.com"},
		{"status still judged", Spec{Type: TypeHTTPS, TLSSkipVerify: true, Path: "/503"}, false, "status 503", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec.mu.Lock()
			rec.sni = ""
			rec.mu.Unlock()
			res := checkOnce(t, addr, tt.spec)
			if res.OK != tt.wantOK || res.Reason != tt.wantReason {
				t.Fatalf("check = %+v, want OK=%v reason %q", res, tt.wantOK, tt.wantReason)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if tt.wantOK && rec.sni != tt.wantSNI {
				t.Errorf("server saw SNI %q, want %q", rec.sni, tt.wantSNI)
			}
		})
	}
}

// TestHTTPSCheckVerifiesAgainstTrustedCert: verification on (the default)
// passes when the certificate is trusted; the test server's certificate
// covers 127.0.0.1 and example.com.
func TestHTTPSCheckVerifiesAgainstTrustedCert(t *testing.T) {
	srv := httptest.NewUnstartedServer((&recorder{}).handler())
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	defer srv.Close()
	c := newHTTPChecker(Target{Addr: addrOf(t, srv.Listener.Addr()), Spec: Spec{Type: TypeHTTPS, SNI: "example.com"}.Normalize()})
	c.tlsConfig.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	res := run(t.Context(), c, 5*time.Second)
	if !res.OK {
		t.Fatalf("check with trusted cert = %+v, want OK", res)
	}
	c.tlsConfig.ServerName = "other.test"
	if res := run(t.Context(), c, 5*time.Second); res.OK || !strings.HasPrefix(res.Reason, "tls: ") {
		t.Fatalf("check with wrong SNI = %+v, want a tls failure", res)
	}
}
