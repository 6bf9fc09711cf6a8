package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds how much of a response body a check reads: enough for any
// health page, and a misbehaving backend cannot make lbd buffer megabytes.
const maxBody = 64 << 10

// httpChecker GETs one URL and judges status and body.
type httpChecker struct {
	url        string
	host       string
	expect     []StatusRange
	expectBody string
	tlsConfig  *tls.Config
}

func newHTTPChecker(t Target) httpChecker {
	s := t.Spec
	scheme := "http"
	if s.Type == TypeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: t.CheckAddr().String(), Path: s.Path}
	if p, q, ok := strings.Cut(s.Path, "?"); ok {
		u.Path, u.RawQuery = p, q
	}
	c := httpChecker{url: u.String(), host: s.Host, expect: s.ExpectStatus, expectBody: s.ExpectBody}
	if s.Type == TypeHTTPS {
		c.tlsConfig = &tls.Config{
			// Off by default; the operator opts in per check (self-signed backends).
			InsecureSkipVerify: s.TLSSkipVerify,
			ServerName:         serverName(s),
		}
	}
	return c
}

// serverName is the TLS name sent as SNI and verified: the explicit sni,
// else the Host header's name, else none (Go then verifies the IP).
func serverName(s Spec) string {
	if s.SNI != "" {
		return s.SNI
	}
	if s.Host == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(s.Host); err == nil {
		return h
	}
	return s.Host
}

func (c httpChecker) check(ctx context.Context) (string, error) {
	// A fresh transport per check: no connection is reused, so every check
	// measures a real connect to the server, and no proxy from the
	// environment sits between lbd and its backends (Proxy is nil).
	tr := &http.Transport{
		DisableKeepAlives:      true,
		TLSClientConfig:        c.tlsConfig,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxBody, // a health answer has small headers
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// A redirect is an answer of this backend; following it would
		// check some other server.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return "", fmt.Errorf("http check %s: %w", c.url, err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "lbd-health/1")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("http check %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	// Read the (bounded) body even when no body is expected: closing with
	// unread data would reset the connection under the server.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if !statusOK(resp.StatusCode, c.expect) {
		return "", failf("status %d", resp.StatusCode)
	}
	if err != nil {
		return "", fmt.Errorf("http check %s: reading body: %w", c.url, err)
	}
	if c.expectBody != "" && !bytes.Contains(body, []byte(c.expectBody)) {
		return "", failf("body does not contain %q", c.expectBody)
	}
	return fmt.Sprintf("status %d", resp.StatusCode), nil
}

func statusOK(code int, ranges []StatusRange) bool {
	for _, r := range ranges {
		if r.Contains(code) {
			return true
		}
	}
	return false
}
