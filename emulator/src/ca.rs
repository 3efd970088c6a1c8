//! The emulator's own certificate authority: one self-signed root generated per run, the TLS server
//! certificates it issues (for the emulator itself and for Azurite), and client certificates for
//! service principals that sign in with a certificate assertion. Tests trust only this root.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize,
};
use time::{Duration, OffsetDateTime};

/// A throw-away root CA. Cloning is cheap enough (PEM strings) and keeps the signing key.
#[derive(Clone)]
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
    params: CertificateParams,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

impl CertificateAuthority {
    /// Generates a new root (ECDSA P-256), valid from yesterday for one year.
    pub fn generate() -> Result<Self> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "aib-emulator test root CA");
        dn.push(DnType::OrganizationName, "aib-emulator");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 365);
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            params,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Writes the root certificate (PEM) to `path`.
    pub fn write_pem(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.cert_pem)
            .with_context(|| format!("writing the CA certificate to {}", path.display()))
    }

    fn issue(&self, mut params: CertificateParams, key: &KeyPair) -> Result<String> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_params(&self.params, &ca_key);
        validity(&mut params, 90);
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(key, &issuer)?.pem())
    }

    /// Issues a TLS server certificate for the given names (IP literals become IP SANs).
    /// Returns `(certificate PEM, PKCS#8 private key PEM)`.
    pub fn issue_server_cert(&self, names: &[&str]) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        Ok((self.issue(params, &key)?, key.serialize_pem()))
    }

    /// Issues an RSA-2048 client certificate, as a service principal registers for certificate
    /// sign-in. Returns `(certificate PEM, PKCS#8 private key PEM)`.
    pub fn issue_client_cert(&self, common_name: &str) -> Result<(String, String)> {
        let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok((self.issue(params, &key)?, key.serialize_pem()))
    }
}
