//! Certificate sign-in: the service connection's PEM (certificate and private key together) read
//! into a signing key, and the client assertion Entra ID asks for, signed in-process with
//! `aws-lc-rs` (no OpenSSL at build or run time).
//!
//! Pure: no I/O here. `entra` sends the assertion; this module only makes it.

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

/// How long an assertion is valid: Entra accepts up to 10 minutes and most SDKs use that.
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// The private key of a certificate credential.
enum SigningKey {
    Rsa(RsaKeyPair),
    Ec {
        key: EcdsaKeyPair,
        /// `ES256` or `ES384`.
        alg: &'static str,
    },
}

impl SigningKey {
    fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::Rsa(key) => key.public_key().as_ref(),
            SigningKey::Ec { key, .. } => key.public_key().as_ref(),
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec { alg, .. } => alg,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| anyhow!("signing the client assertion with the RSA key failed"))?;
                Ok(signature)
            }
            SigningKey::Ec { key, .. } => Ok(key
                .sign(&rng, message)
                .map_err(|_| anyhow!("signing the client assertion with the EC key failed"))?
                .as_ref()
                .to_vec()),
        }
    }
}

/// A certificate credential: the certificate Entra knows the app by and the key that signs.
pub struct ClientCertificate {
    key: SigningKey,
    /// base64url(SHA-1(DER)): the `x5t` header.
    x5t: String,
    /// base64url(SHA-256(DER)): the `x5t#S256` header.
    x5t_s256: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("alg", &self.key.alg())
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads a PEM holding the certificate (possibly with its chain) and the private key
    /// (PKCS#8, PKCS#1 RSA or SEC1 EC). The certificate used is the one whose public key belongs
    /// to the private key, so the order of the blocks does not matter. `origin` names where the
    /// PEM came from, for error messages (it never quotes the PEM).
    pub fn from_pem(pem: &str, origin: &str) -> Result<ClientCertificate> {
        let certificates: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow!("{origin} holds an unreadable PEM certificate block ({e})"))?;
        if certificates.is_empty() {
            bail!(
                "{origin} holds no certificate: expected one PEM with a '-----BEGIN CERTIFICATE-----' block and the private key"
            );
        }
        let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            anyhow!(
                "{origin} holds no private key: expected one PEM with the certificate and a '-----BEGIN PRIVATE KEY-----' (or RSA/EC PRIVATE KEY) block; a PFX must be converted to PEM first"
            )
        })?;
        let key = signing_key(&key).with_context(|| format!("{origin}: unusable private key"))?;
        let certificate = certificates
            .iter()
            .find(|cert| {
                subject_public_key(cert.as_ref()).is_ok_and(|public| public == key.public_key())
            })
            .ok_or_else(|| {
                anyhow!(
                    "{origin}: none of its {} certificate(s) belongs to its private key; put the service principal's certificate and its own key in the PEM",
                    certificates.len()
                )
            })?;
        Ok(ClientCertificate {
            x5t: URL_SAFE_NO_PAD.encode(digest::digest(
                &digest::SHA1_FOR_LEGACY_USE_ONLY,
                certificate.as_ref(),
            )),
            x5t_s256: URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, certificate.as_ref())),
            key,
        })
    }

    /// The `x5t` thumbprint (base64url SHA-1 of the certificate DER).
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// The `x5t#S256` thumbprint (base64url SHA-256 of the certificate DER).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// A client assertion for `client_id` at `audience` (the token endpoint), valid from
    /// `now` (unix seconds) for ten minutes, with a fresh `jti`.
    pub fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Result<String> {
        let header = json!({
            "alg": self.key.alg(),
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

fn signing_key(key: &PrivateKeyDer<'_>) -> Result<SigningKey> {
    const EC: [(&EcdsaSigningAlgorithm, &str); 2] = [
        (&ECDSA_P256_SHA256_FIXED_SIGNING, "ES256"),
        (&ECDSA_P384_SHA384_FIXED_SIGNING, "ES384"),
    ];
    match key {
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(SigningKey::Rsa)
            .map_err(|e| anyhow!("the RSA key was rejected ({e})")),
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
                return Ok(SigningKey::Rsa(rsa));
            }
            EC.iter()
                .find_map(|(alg, name)| {
                    EcdsaKeyPair::from_pkcs8(alg, der)
                        .ok()
                        .map(|key| SigningKey::Ec { key, alg: name })
                })
                .ok_or_else(|| {
                    anyhow!("the key is neither RSA nor EC P-256/P-384, which Entra ID accepts")
                })
        }
        PrivateKeyDer::Sec1(der) => EC
            .iter()
            .find_map(|(alg, name)| {
                EcdsaKeyPair::from_private_key_der(alg, der.secret_sec1_der())
                    .ok()
                    .map(|key| SigningKey::Ec { key, alg: name })
            })
            .ok_or_else(|| anyhow!("the EC key is not on curve P-256 or P-384")),
        _ => bail!("unsupported private key format"),
    }
}

/// One DER element: `(tag, contents, rest)`.
fn der_next(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first().context("truncated DER")?;
    let (&first, mut rest) = rest.split_first().context("truncated DER")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            bail!("unsupported DER length");
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        bail!("truncated DER");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The subject public key of an X.509 certificate: the contents of the SPKI's BIT STRING, which
/// is what `aws-lc-rs` gives as a key pair's public key (PKCS#1 for RSA, the point for EC).
fn subject_public_key(cert: &[u8]) -> Result<&[u8]> {
    let (_, certificate, _) = der_next(cert)?;
    let (_, tbs, _) = der_next(certificate)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = der_next(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..5 {
        rest = der_next(rest)?.2;
    }
    let (_, spki, _) = der_next(rest)?;
    let (_, _algorithm, spki_rest) = der_next(spki)?;
    let (tag, bits, _) = der_next(spki_rest)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        bail!("unexpected subject public key encoding");
    }
    Ok(&bits[1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    };

    fn decode(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// A minimal certificate DER carrying `public` as its subject public key (only the structure
    /// matters here; Entra and the emulator check signatures against it).
    fn fake_certificate(public: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = body.len();
            if len < 0x80 {
                out.push(len as u8);
            } else {
                out.extend([0x82, (len >> 8) as u8, len as u8]);
            }
            out.extend_from_slice(body);
            out
        }
        let mut bits = vec![0];
        bits.extend_from_slice(public);
        let spki = tlv(0x30, &[tlv(0x30, &[]), tlv(0x03, &bits)].concat());
        let tbs = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[2])),
                tlv(0x02, &[1]),
                tlv(0x30, &[]),
                tlv(0x30, &[]),
                tlv(0x30, &[]),
                tlv(0x30, &[]),
                spki,
            ]
            .concat(),
        );
        tlv(0x30, &[tbs, tlv(0x30, &[]), tlv(0x03, &[0])].concat())
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn ec_key_signs_an_es256_assertion_with_thumbprints() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let cert = fake_certificate(key.public_key().as_ref());
        // A chain certificate first: the one matching the key is picked.
        let other = fake_certificate(&[4; 65]);
        let text = format!(
            "{}{}{}",
            pem("CERTIFICATE", &other),
            pem("PRIVATE KEY", pkcs8.as_ref()),
            pem("CERTIFICATE", &cert)
        );
        let credential = ClientCertificate::from_pem(&text, "the test PEM").unwrap();
        assert_eq!(
            credential.x5t(),
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert))
        );
        assert_eq!(credential.x5t().len(), 27);
        assert_eq!(credential.x5t_s256().len(), 43);

        let jwt = credential
            .assertion("client-1", "https://login.test/t/oauth2/v2.0/token", 1_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5t"], credential.x5t());
        assert_eq!(header["x5t#S256"], credential.x5t_s256());
        let claims = decode(parts[1]);
        assert_eq!(claims["aud"], "https://login.test/t/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], 1_000);
        assert_eq!(claims["exp"], 1_600);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .expect("valid ES256 signature");

        let second = credential.assertion("client-1", "aud", 1_000).unwrap();
        assert_ne!(
            decode(second.split('.').nth(1).unwrap())["jti"],
            claims["jti"],
            "every assertion has its own jti"
        );
    }

    #[test]
    fn rsa_key_signs_rs256() {
        use aws_lc_rs::encoding::AsDer;
        let pkcs8 = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .unwrap()
            .as_der()
            .unwrap();
        let key = RsaKeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let cert = fake_certificate(key.public_key().as_ref());
        let text = format!(
            "{}{}",
            pem("CERTIFICATE", &cert),
            pem("PRIVATE KEY", pkcs8.as_ref())
        );
        let credential = ClientCertificate::from_pem(&text, "the test PEM").unwrap();
        let jwt = credential.assertion("c", "a", 5).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(decode(parts[0])["alg"], "RS256");
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .expect("valid RS256 signature");
    }

    #[test]
    fn unusable_pems_say_what_is_missing_without_quoting_the_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let err = ClientCertificate::from_pem(&key_pem, "the PEM").unwrap_err();
        assert!(format!("{err:#}").contains("no certificate"), "{err:#}");

        let cert_pem = pem("CERTIFICATE", &fake_certificate(&[4; 65]));
        let err = ClientCertificate::from_pem(&cert_pem, "the PEM").unwrap_err();
        assert!(format!("{err:#}").contains("no private key"), "{err:#}");

        let err =
            ClientCertificate::from_pem(&format!("{cert_pem}{key_pem}"), "the PEM").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("belongs to its private key"), "{text}");
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line));
        }
    }
}
