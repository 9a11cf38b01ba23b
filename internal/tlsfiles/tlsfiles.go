// Package tlsfiles builds crypto/tls configurations from PEM files the way HAProxy reads them:
// a frontend's certificate (a chain and its key in one file, in two files, or a directory of
// such files picked by SNI) with optional client-certificate verification, and a client
// configuration for reaching a TLS server. Errors name the file at fault.
//
// The files are read when the function is called; a reload calls it again.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Verify modes, as HAProxy's "verify" keyword spells them.
const (
	VerifyNone     = "none"
	VerifyOptional = "optional"
	VerifyRequired = "required"
	// VerifyChain (servers only) checks that the server's certificate chains to a trusted CA,
	// whatever name it is for: what HAProxy's "verify required" does without sni or verifyhost.
	VerifyChain = "chain"
)

// ServerConfig returns the configuration of a TLS-terminating frontend, TLS 1.2 at least.
//
// cert is a PEM file holding a certificate chain (leaf first) and, when key is "", its private
// key too, or else beside it in cert+".key" (as HAProxy loads it). cert may also be a directory:
// every file in it (in name order; names starting with "." or ending in .key, .ocsp, .issuer or
// .sctl are skipped, as HAProxy does) is such a PEM file, and the certificate is chosen by the
// client's SNI, the first one being the default; key must then be "".
//
// verify is "none" (or ""), "optional" (a client certificate is verified when given) or
// "required"; the last two need ca, a PEM bundle of the CAs client certificates must chain to.
func ServerConfig(cert, key, ca, verify string) (*tls.Config, error) {
	if cert == "" {
		return nil, errors.New("tls: no certificate file given")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	st, err := os.Stat(cert)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate: %w", err)
	}
	if st.IsDir() {
		if key != "" {
			return nil, fmt.Errorf("tls: certificate directory %s: a key file cannot be given with a directory (each PEM file holds its key, or has it in FILE.key)", cert)
		}
		if cfg.Certificates, err = loadDir(cert); err != nil {
			return nil, err
		}
	} else {
		c, err := LoadKeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	switch verify {
	case "", VerifyNone:
		cfg.ClientAuth = tls.NoClientCert
		return cfg, nil
	case VerifyOptional:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case VerifyRequired:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("tls: unknown verify mode %q (want none, optional or required)", verify)
	}
	if ca == "" {
		return nil, fmt.Errorf("tls: verify %s needs a CA file to verify client certificates with", verify)
	}
	if cfg.ClientCAs, err = loadPool(ca); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ClientConfig returns the configuration for connecting to a TLS server (a broker), TLS 1.2 at
// least.
//
// verify is "required" (or "": the server's certificate must chain to a CA of ca, a PEM bundle,
// or of the system's pool when ca is "", and name serverName) or "none" (anything is accepted).
// serverName is sent as SNI and verified; "" means host, the host part of the server's address
// (an IP address is verified against the certificate's IP addresses and not sent as SNI).
// cert and key are a client certificate to present, loaded like ServerConfig's (key "" = in the
// cert file or in cert+".key"); cert "" presents none.
func ClientConfig(ca, verify, serverName, cert, key, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if cfg.ServerName == "" {
		cfg.ServerName = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	switch verify {
	case "", VerifyRequired:
		if ca != "" {
			pool, err := loadPool(ca)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
	case VerifyChain:
		var roots *x509.CertPool
		if ca != "" {
			pool, err := loadPool(ca)
			if err != nil {
				return nil, err
			}
			roots = pool
		}
		// Go verifies names with the chain; skip both and verify the chain alone.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	case VerifyNone:
		cfg.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("tls: unknown verify mode %q for a server (want none, chain or required)", verify)
	}
	switch {
	case cert != "":
		c, err := LoadKeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	case key != "":
		return nil, fmt.Errorf("tls: key file %s given without a certificate file", key)
	}
	return cfg, nil
}

// LoadKeyPair loads a certificate chain and its private key. certFile holds the chain (leaf
// first); keyFile holds the key, or, when it is "", the key is in certFile, or else in
// certFile+".key". Blocks of other types (DH parameters, say) are ignored.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: certificate: %w", err)
	}
	chain, keyBlock := split(certPEM)
	if len(chain) == 0 {
		return tls.Certificate{}, fmt.Errorf("tls: certificate file %s: no PEM CERTIFICATE block in it", certFile)
	}
	keyFrom := certFile
	switch {
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tls: key: %w", err)
		}
		if _, keyBlock = split(b); keyBlock == nil {
			return tls.Certificate{}, fmt.Errorf("tls: key file %s: no PEM PRIVATE KEY block in it", keyFile)
		}
		keyFrom = keyFile
	case keyBlock == nil:
		side := certFile + ".key"
		b, err := os.ReadFile(side)
		if errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, fmt.Errorf("tls: certificate file %s: no private key in it, and no %s beside it", certFile, side)
		}
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tls: key: %w", err)
		}
		if _, keyBlock = split(b); keyBlock == nil {
			return tls.Certificate{}, fmt.Errorf("tls: key file %s: no PEM PRIVATE KEY block in it", side)
		}
		keyFrom = side
	}
	var certOnly []byte
	for _, b := range chain {
		certOnly = append(certOnly, pem.EncodeToMemory(b)...)
	}
	c, err := tls.X509KeyPair(certOnly, pem.EncodeToMemory(keyBlock))
	if err != nil {
		if keyFrom == certFile {
			return tls.Certificate{}, fmt.Errorf("tls: certificate file %s: %w", certFile, err)
		}
		return tls.Certificate{}, fmt.Errorf("tls: certificate file %s with key file %s: %w", certFile, keyFrom, err)
	}
	return c, nil
}

// split returns the CERTIFICATE blocks of a PEM file and its first private key block.
func split(b []byte) (certs []*pem.Block, key *pem.Block) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return certs, key
		}
		switch {
		case blk.Type == "CERTIFICATE":
			certs = append(certs, blk)
		case key == nil && (blk.Type == "PRIVATE KEY" || strings.HasSuffix(blk.Type, " PRIVATE KEY")):
			key = blk
		}
	}
}

// skippedInDir are the endings of files a certificate directory holds beside the PEM files.
var skippedInDir = []string{".key", ".ocsp", ".issuer", ".sctl"}

// loadDir loads every certificate file of dir.
func loadDir(dir string) ([]tls.Certificate, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate directory: %w", err)
	}
	var certs []tls.Certificate
	for _, e := range ents { // ReadDir sorts by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || slices.ContainsFunc(skippedInDir, func(ext string) bool { return strings.HasSuffix(name, ext) }) {
			continue
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path) // follows symbolic links, as in a Kubernetes secret volume
		if err != nil {
			return nil, fmt.Errorf("tls: certificate: %w", err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		c, err := LoadKeyPair(path, "")
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("tls: certificate directory %s: no certificate file in it", dir)
	}
	return certs, nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	certs, _ := split(b)
	if len(certs) == 0 {
		return nil, fmt.Errorf("tls: CA file %s: no PEM CERTIFICATE block in it", file)
	}
	pool := x509.NewCertPool()
	for _, blk := range certs {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file %s: %w", file, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}
