/* The deployment's own certificate authority (DESIGN §7): sites talk to each other over
 * TLS 1.3 with mutual authentication, each with a key and a certificate whose subject CN
 * is its site name, signed by the CA made here. `hsm ca` drives it; hsmd uses
 * pki_cert_cn and pki_verify to learn and check its own identity.
 *
 * Keys: ECDSA P-256. Files are PEM. Keys written 0600 (O_CREAT|O_EXCL, then fsync; a
 * half-written file is removed), certificates 0644. Existing files are never replaced:
 * the admin deletes old ones on purpose. Every function returns 0 or -1 with a message
 * naming the file and the cause in err. */
#ifndef HSM_PKI_H
#define HSM_PKI_H

#include <stddef.h>

#define PKI_CA_DAYS_DEFAULT   3650
#define PKI_SITE_DAYS_DEFAULT 825
#define PKI_DAYS_MAX	      36500 /* no longer validity is accepted */

/* Makes dir (0700 if missing, parents 0755) and dir/ca.key, dir/ca.crt (self-signed,
 * CN = name, basicConstraints critical CA:TRUE pathlen:0, keyUsage keyCertSign+cRLSign,
 * subjectKeyIdentifier). Refuses when ca.key or ca.crt already exists: a CA is never
 * silently replaced. */
int pki_ca_init(const char *dir, const char *name, int days, char *err, size_t errlen);

/* Loads dir/ca.key + dir/ca.crt (the key must match the certificate) and makes
 * dir/SITE.key and dir/SITE.crt: CN = site, serial of 128 random bits, subjectAltName
 * DNS:site plus one entry per host (an IPv4/IPv6 literal becomes IP:, anything else
 * DNS:), basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage
 * serverAuth+clientAuth, authorityKeyIdentifier. site must be a valid site name
 * (hsm_site_name_valid) other than "ca". Always refuses when SITE.key or SITE.crt
 * exists, and when the certificate would outlive the CA's. */
int pki_issue(const char *dir, const char *site, const char *const *hosts, size_t nhosts, int days,
	      char *err, size_t errlen);

/* The subject CN of a PEM certificate, as UTF-8. Fails when there is no CN or more than
 * one, or when it does not fit cnlen. */
int pki_cert_cn(const char *cert_file, char *cn, size_t cnlen, char *err, size_t errlen);

/* 0 if cert_file chains to ca_file and is currently valid, else -1 with the reason
 * (X509_verify_cert_error_string). */
int pki_verify(const char *ca_file, const char *cert_file, char *err, size_t errlen);

#endif
