//go:build ignore

// certgen writes the PKI that hack/kube-up needs when openssl is not
// installed (or KILN_KUBE_CERTGEN=go). It produces the same files as the
// openssl path, all EC P-256:
//
//	ca.crt ca.key               self-signed CA (client CA + signer for the rest)
//	apiserver.crt apiserver.key serving cert for 127.0.0.1/localhost/kubernetes.default...
//	admin.crt admin.key         client cert CN=kiln-admin O=system:masters
//	front-proxy.crt .key        client cert CN=front-proxy-client (requestheader)
//	kubelet-client.crt .key     client cert CN=kube-apiserver-kubelet-client O=system:masters
//	node.crt node.key           client cert CN=system:node:kiln-node O=system:nodes (hack/kube-node's kubelet)
//	kube-proxy.crt .key         client cert CN=system:kube-proxy
//	sa.key sa.pub               service-account token signing key pair
//
// Standard library only; run as `go run hack/kube/certgen.go -dir DIR`
// (the ignore build tag keeps it out of the kiln module's packages).
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir := flag.String("dir", ".", "output directory")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("certgen: ")
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	out := func(name string) string { return filepath.Join(*dir, name) }

	caKey := newKey(out("ca.key"))
	ca := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "kiln-kube-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert := sign(out("ca.crt"), ca, nil, caKey, caKey)

	sign(out("apiserver.crt"), &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}, caCert, newKey(out("apiserver.key")), caKey)

	// O=system:masters is bound to cluster-admin by the default RBAC policy.
	sign(out("admin.crt"), &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kiln-admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, newKey(out("admin.key")), caKey)

	// The apiserver's client identity towards aggregated API servers.
	sign(out("front-proxy.crt"), &x509.Certificate{
		Subject:     pkix.Name{CommonName: "front-proxy-client"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, newKey(out("front-proxy.key")), caKey)

	// The real node's identities (hack/kube-node), and the apiserver's
	// towards its kubelet (logs, exec, port-forward).
	for _, c := range []struct {
		file string
		subj pkix.Name
	}{
		{"kubelet-client", pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}}},
		{"node", pkix.Name{CommonName: "system:node:kiln-node", Organization: []string{"system:nodes"}}},
		{"kube-proxy", pkix.Name{CommonName: "system:kube-proxy"}},
	} {
		sign(out(c.file+".crt"), &x509.Certificate{
			Subject:     c.subj,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, caCert, newKey(out(c.file+".key")), caKey)
	}

	saKey := newKey(out("sa.key"))
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		log.Fatal(err)
	}
	writePEM(out("sa.pub"), "PUBLIC KEY", pub, 0o644)
}

// newKey generates an EC P-256 key and writes it as PKCS#8 PEM.
func newKey(path string) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	writePEM(path, "PRIVATE KEY", der, 0o600)
	return key
}

// sign issues tmpl for key's public half, signed by parent/parentKey
// (self-signed when parent is nil), and writes it as PEM.
func sign(path string, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, parentKey crypto.Signer) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		log.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour) // tolerate small clock skew
	tmpl.NotAfter = time.Now().AddDate(10, 0, 0)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		log.Fatal(err)
	}
	writePEM(path, "CERTIFICATE", der, 0o644)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return cert
}

func writePEM(path, typ string, der []byte, mode os.FileMode) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		log.Fatal(err)
	}
}
