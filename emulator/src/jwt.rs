//! JSON Web Tokens as the emulator mints and checks them: RS256 signing keys (one for Entra access
//! tokens, one for the Azure DevOps OIDC issuer), compact encoding, signature checks with aws-lc-rs
//! (RS256 and ES256), and the little X.509 reading needed to check a certificate client assertion
//! (thumbprints, the subject public key).

use anyhow::{Context, Result, anyhow, bail};
use aws_lc_rs::{
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{
        self, ECDSA_P256_SHA256_FIXED, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    },
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Map, Value, json};
use sha1::Digest as _;

/// An RS256 signing key with a key id, as an issuer publishes it.
pub struct SigningKey {
    kid: String,
    pair: RsaKeyPair,
}

impl SigningKey {
    /// Generates an RSA-2048 key with a random key id.
    pub fn generate() -> Result<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow!("RSA key generation failed"))?;
        let kid = URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(pair.public_key().as_ref())[..20]);
        Ok(Self { kid, pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with header `{"typ":"JWT","alg":"RS256","kid":…,"x5t":…}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing cannot fail with a valid key");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks an RS256 signature made by this key.
    pub fn verify(&self, token: &Jwt) -> bool {
        token.alg() == Some("RS256")
            && UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.pair.public_key().as_ref())
                .verify(token.signing_input.as_bytes(), &token.signature)
                .is_ok()
    }

    /// The public key as a JWK (for the discovery `keys` document).
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }
}

/// A decoded (not yet trusted) compact JWT.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Splits and decodes a compact JWS. Fails on anything that is not three base64url parts of
    /// JSON objects.
    pub fn decode(token: &str) -> Result<Self> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("a JWT has three parts separated by dots");
        };
        let object = |part: &str| -> Result<Map<String, Value>> {
            let bytes = URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .context("not base64url")?;
            match serde_json::from_slice(&bytes).context("not JSON")? {
                Value::Object(map) => Ok(map),
                _ => bail!("not a JSON object"),
            }
        };
        Ok(Self {
            header: object(h)?,
            claims: object(c)?,
            signing_input: format!("{h}.{c}"),
            signature: URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .context("signature not base64url")?,
        })
    }

    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// The `aud` claim as a list (it may be a string or an array).
    pub fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Verifies the signature with a certificate's public key: RS256 with an RSA key, ES256 with a
    /// P-256 key.
    pub fn verify_with_certificate(&self, cert: &Certificate) -> Result<()> {
        let (alg, key): (&'static dyn signature::VerificationAlgorithm, _) = match self.alg() {
            Some("RS256") => (&RSA_PKCS1_2048_8192_SHA256, &cert.public_key),
            Some("ES256") => (&ECDSA_P256_SHA256_FIXED, &cert.public_key),
            other => bail!("unsupported signing algorithm {other:?}"),
        };
        UnparsedPublicKey::new(alg, key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| anyhow!("signature does not verify with the certificate's key"))
    }
}

/// A registered certificate: its DER, thumbprints and subject public key bits.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub der: Vec<u8>,
    /// base64url(SHA-1(DER)), the `x5t` header value.
    pub x5t: String,
    /// base64url(SHA-256(DER)), the `x5t#S256` header value.
    pub x5t_s256: String,
    /// Contents of subjectPublicKey (RSAPublicKey DER, or an uncompressed EC point).
    pub public_key: Vec<u8>,
}

impl Certificate {
    /// Whether an `x5t` / `x5t#S256` header value names this certificate. Entra accepts the
    /// digest as base64url (the standard form), padded standard base64 (as some SDKs send it) or
    /// hex.
    pub fn matches_thumbprint(&self, value: &str) -> bool {
        let value = value.trim();
        let decoded = URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .ok()
            .or_else(|| STANDARD.decode(value).ok());
        let hex: Option<Vec<u8>> = (value.len().is_multiple_of(2)
            && value.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| {
            (0..value.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&value[i..i + 2], 16).unwrap_or(0))
                .collect()
        });
        let sha1 = sha1::Sha1::digest(&self.der).to_vec();
        let sha256 = sha2::Sha256::digest(&self.der).to_vec();
        [decoded, hex]
            .into_iter()
            .flatten()
            .any(|d| d == sha1 || d == sha256)
    }

    /// Reads the first `CERTIFICATE` block of a PEM text (which may also hold a private key).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = pem_block(pem, "CERTIFICATE").context("no CERTIFICATE block in the PEM")?;
        Self::from_der(der)
    }

    pub fn from_der(der: Vec<u8>) -> Result<Self> {
        let public_key =
            subject_public_key(&der).context("reading the certificate's public key")?;
        Ok(Self {
            x5t: URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der)),
            public_key,
            der,
        })
    }
}

/// The base64 body of the first `-----BEGIN {label}-----` block.
pub fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// One DER TLV: (tag, content, rest).
fn der_next(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first().context("truncated DER")?;
    let (&first, mut rest) = rest.split_first().context("truncated DER")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            bail!("bad DER length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        bail!("truncated DER value");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Walks Certificate → tbsCertificate → subjectPublicKeyInfo → subjectPublicKey.
fn subject_public_key(cert: &[u8]) -> Result<Vec<u8>> {
    let (_, cert, _) = der_next(cert)?;
    let (_, tbs, _) = der_next(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der_next(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = der_next(rest)?.2;
    }
    let (_, spki, _) = der_next(rest)?;
    let (_, _algorithm, spki_rest) = der_next(spki)?;
    let (tag, bits, _) = der_next(spki_rest)?;
    if tag != 0x03 || bits.is_empty() {
        bail!("subjectPublicKey is not a BIT STRING");
    }
    Ok(bits[1..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_round_trip() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign(&json!({"aud": "x", "exp": 1}));
        let jwt = Jwt::decode(&token).unwrap();
        assert!(key.verify(&jwt));
        assert_eq!(jwt.claim_str("aud"), Some("x"));
        let other = SigningKey::generate().unwrap();
        assert!(!other.verify(&jwt));
    }

    #[test]
    fn reads_public_key_of_issued_certificate() {
        let ca = crate::ca::CertificateAuthority::generate().unwrap();
        let (pem, _key) = ca.issue_client_cert("client").unwrap();
        let cert = Certificate::from_pem(&pem).unwrap();
        assert!(cert.public_key.len() > 256);
        assert_eq!(cert.x5t.len(), 27);
        let sha1 = sha1::Sha1::digest(&cert.der);
        assert!(cert.matches_thumbprint(&cert.x5t));
        assert!(cert.matches_thumbprint(&cert.x5t_s256));
        assert!(cert.matches_thumbprint(&STANDARD.encode(sha1)));
        assert!(
            cert.matches_thumbprint(&sha1.iter().map(|b| format!("{b:02X}")).collect::<String>())
        );
        assert!(!cert.matches_thumbprint("AAAA"));
    }
}
