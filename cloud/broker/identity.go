package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/luling-edge/luling/payload"
)

// Gateways is the gateway registry as the broker asks it, at every login,
// every TLS handshake with a client certificate, and in Revalidate.
// cloud/registry's Live view is one.
type Gateways interface {
	// PasswordHash returns the bcrypt hash of an enabled gateway
	// "{site}/{gateway}" that has a password.
	PasswordHash(user string) ([]byte, bool)
	// CertAllowed reports whether user is an enabled gateway and serial
	// (lowercase hex) one of its certificates, not revoked.
	CertAllowed(user, serial string) bool
}

// CertIdentity returns the gateway a client certificate names: its
// subject common name "{site}/{gateway}", as cloud/pki issues it.
func CertIdentity(c *x509.Certificate) (user string, err error) {
	site, gw, ok := strings.Cut(c.Subject.CommonName, "/")
	if !ok || !payload.ValidID(site) || !payload.ValidID(gw) {
		return "", fmt.Errorf("client certificate %s (serial %s): subject CN: want {site}/{gateway}", c.Subject.CommonName, c.SerialNumber.Text(16))
	}
	return c.Subject.CommonName, nil
}

// errCertRefused fails a TLS handshake whose client certificate the
// registry does not admit.
var errCertRefused = errors.New("broker: client certificate revoked, unknown or its gateway disabled")

// verifyConnection is the TLS listener's last handshake check: a client
// certificate (already verified against the client CAs) must name a
// gateway that the registry lists, enabled, with that serial unrevoked.
// A handshake without one passes (a password login follows) unless the
// listener requires one.
func (h *aclHook) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	c := cs.PeerCertificates[0]
	user, err := CertIdentity(c)
	if err != nil {
		h.log.Warn("broker: refused TLS handshake", "err", err)
		return err
	}
	if h.gws == nil || !h.gws.CertAllowed(user, c.SerialNumber.Text(16)) {
		h.log.Warn("broker: refused TLS handshake: certificate not admitted by the registry", "gateway", user, "serial", c.SerialNumber.Text(16))
		return errCertRefused
	}
	return nil
}

// peerCert returns the verified client certificate of cl's connection, if
// it has one.
func peerCert(cl *mqtt.Client) *x509.Certificate {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// adoptCertIdentity makes a client that presented a verified certificate
// and no username that certificate's gateway, before the will and the
// login are checked. It returns the identity ("" without a certificate).
func adoptCertIdentity(cl *mqtt.Client) string {
	c := peerCert(cl)
	if c == nil {
		return ""
	}
	user, err := CertIdentity(c)
	if err != nil {
		return ""
	}
	if len(cl.Properties.Username) == 0 {
		cl.Properties.Username = []byte(user)
	}
	return user
}

// certLogin authenticates a client by its certificate: the username, if
// given, must be the certificate's identity; the password is not looked
// at. ok false means the client has no certificate.
func (h *aclHook) certLogin(cl *mqtt.Client) (admitted, ok bool) {
	c := peerCert(cl)
	if c == nil {
		return false, false
	}
	user, err := CertIdentity(c)
	if err != nil {
		return false, true
	}
	if string(cl.Properties.Username) != user {
		h.log.Warn("broker: authentication failed: username is not the certificate's gateway", "username", string(cl.Properties.Username), "certificate", user, "client_id", cl.ID, "remote", cl.Net.Remote)
		return false, true
	}
	if h.gws == nil || !h.gws.CertAllowed(user, c.SerialNumber.Text(16)) {
		h.log.Warn("broker: authentication failed: certificate not admitted by the registry", "username", user, "serial", c.SerialNumber.Text(16), "client_id", cl.ID)
		return false, true
	}
	return true, true
}

// passwordHash returns the bcrypt hash for user from the registry or,
// failing that, the static credentials.
func (h *aclHook) passwordHash(user string) ([]byte, bool) {
	if h.gws != nil {
		if hash, ok := h.gws.PasswordHash(user); ok {
			return hash, true
		}
	}
	hash, ok := h.creds[user]
	return hash, ok
}

// stillAdmitted reports whether a connected client would be let in now.
func (h *aclHook) stillAdmitted(cl *mqtt.Client) bool {
	user := string(cl.Properties.Username)
	if user == h.user && cl.Net.Listener == listenerInternal {
		return true
	}
	if c := peerCert(cl); c != nil {
		id, err := CertIdentity(c)
		return err == nil && id == user && time.Now().Before(c.NotAfter) &&
			h.gws != nil && h.gws.CertAllowed(user, c.SerialNumber.Text(16))
	}
	_, ok := h.passwordHash(user)
	return ok
}

// Revalidate disconnects every connected gateway that the registry no
// longer admits: removed, disabled, its password removed, or the
// certificate it connected with revoked or expired since. cloudd runs it
// after every registry change and every minute (for expiry). It returns
// how many clients it disconnected.
func (b *Broker) Revalidate() int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Closed() || cl.Net.Inline || b.hook.stillAdmitted(cl) {
			continue
		}
		b.hook.log.Warn("broker: disconnecting a gateway the registry no longer admits", "username", string(cl.Properties.Username), "client_id", cl.ID, "remote", cl.Net.Remote)
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		} else {
			cl.Stop(packets.ErrNotAuthorized)
		}
		n++
	}
	return n
}
