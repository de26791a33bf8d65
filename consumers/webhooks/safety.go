package webhooks

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrDestinationRefused is wrapped by the error of an attempt whose resolved
// address is in a range the configuration does not allow.
var ErrDestinationRefused = errors.New("webhooks: destination address refused")

// ErrRedirect is wrapped by the error of an attempt answered with a
// redirect: redirects are never followed, since the target was not checked
// and a redirect would replay the signed body elsewhere.
var ErrRedirect = errors.New("webhooks: redirect not followed")

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// addrGuard decides which resolved addresses may be dialled.
type addrGuard struct{ loopback, private, linkLocal bool }

// check classifies ip and refuses it unless its class is allowed.
func (g addrGuard) check(ip netip.Addr) error {
	ip = ip.Unmap()
	var class, knob string
	switch {
	case ip.IsLoopback() || ip.IsUnspecified():
		if g.loopback {
			return nil
		}
		class, knob = "loopback", "allow_loopback"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
		if g.linkLocal {
			return nil
		}
		class, knob = "link-local", "allow_link_local"
	case ip.IsPrivate() || cgnat.Contains(ip):
		if g.private {
			return nil
		}
		class, knob = "private", "allow_private"
	case ip.IsMulticast():
		class, knob = "multicast", "(none)"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s is a %s address (config: %s)", ErrDestinationRefused, ip, class, knob)
}

// control runs after name resolution, just before connect(2), so the check
// applies to the address actually dialled: a hostname that resolves (or
// re-resolves, as in DNS rebinding) to a refused range fails here.
func (g addrGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialled address %q", ErrDestinationRefused, address)
	}
	return g.check(ap.Addr())
}

// newClient builds the HTTP client every endpoint shares. It never uses a
// proxy from the environment (that would bypass the address check) and
// never follows redirects.
func newClient(cfg *Config) *http.Client {
	g := addrGuard{loopback: cfg.AllowLoopback, private: cfg.AllowPrivate, linkLocal: cfg.AllowLinkLocal}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	perHost := 0
	for _, e := range cfg.Endpoints {
		perHost += max(e.Concurrency, cfg.Concurrency)
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(perHost, 100),
		MaxIdleConnsPerHost:   max(perHost, 2),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// scrub masks the endpoint's secrets (header values, URL credentials and
// query values, signing secrets) in text that came back from it.
func (ep *endpoint) scrub(s string) string {
	if ep.secrets == nil {
		return s
	}
	return ep.secrets.Replace(s)
}

// newScrubber masks every value a delivery to ec sends that may be a
// secret. Values shorter than 6 bytes are left: masking "ops" everywhere
// would garble messages and hide nothing that matters.
func newScrubber(ec EndpointConfig) *strings.Replacer {
	var values []string
	add := func(v string) {
		if len(v) >= 6 {
			values = append(values, v)
		}
	}
	for _, v := range ec.Headers {
		add(v)
		for _, f := range strings.Fields(v) { // "Bearer <token>"
			add(f)
		}
	}
	if u, err := url.Parse(ec.URL); err == nil {
		if u.User != nil {
			add(u.User.Username())
			pw, _ := u.User.Password()
			add(pw)
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				add(v)
			}
		}
	}
	for _, s := range ec.Secrets {
		add(s)
		add(strings.TrimPrefix(s, SecretPrefix))
	}
	if len(values) == 0 {
		return nil
	}
	// Longest first, so a value containing another is masked whole.
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	pairs := make([]string, 0, 2*len(values))
	for _, v := range values {
		pairs = append(pairs, v, "***")
	}
	return strings.NewReplacer(pairs...)
}
