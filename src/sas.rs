//! Shared access signatures for the one artifact blob Image Builder downloads: read-only, scoped
//! to that blob, HTTPS-only whenever the endpoint is HTTPS, valid from a little before now until
//! the build can no longer need it. Signed with the account key (service SAS) or, where shared
//! keys are forbidden, with a user delegation key. Pure computation; no I/O.

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::format_description::well_known::iso8601::{Config, TimePrecision};

/// The signed version (`sv`): the pinned service version, [`crate::storage::SERVICE_VERSION`].
/// The strings to sign below are that version's; they grow with newer versions (2025-07-05 adds
/// lines to the user delegation SAS), so a new pin needs them checked.
pub const SAS_VERSION: &str = crate::storage::SERVICE_VERSION;

/// Which protocols the SAS allows (`spr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpsOnly,
    /// Only for endpoints that are plain HTTP themselves (an emulator).
    HttpsAndHttp,
}

impl Protocol {
    /// HTTPS-only unless the endpoint itself is plain HTTP.
    pub fn for_endpoint(endpoint: &url::Url) -> Protocol {
        if endpoint.scheme() == "https" {
            Protocol::HttpsOnly
        } else {
            Protocol::HttpsAndHttp
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpsOnly => "https",
            Protocol::HttpsAndHttp => "https,http",
        }
    }
}

/// What a blob SAS grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobSas {
    pub account: String,
    pub container: String,
    pub blob: String,
    /// Permission letters in the service's canonical order (`r` for read-only).
    pub permissions: String,
    pub start: OffsetDateTime,
    pub expiry: OffsetDateTime,
    pub protocol: Protocol,
}

/// A user delegation key as `Get User Delegation Key` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDelegationKey {
    pub signed_oid: String,
    pub signed_tid: String,
    pub signed_start: String,
    pub signed_expiry: String,
    pub signed_service: String,
    pub signed_version: String,
    /// Base64, as the service returns it.
    pub value: String,
}

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasToken(***)")
    }
}

/// A signed SAS query string (without `?`). Its `sig` is a secret: announce it before printing
/// anything that might contain it.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    pub query: String,
    pub signature: String,
}

/// ISO 8601 UTC with whole seconds, as the service expects: `2026-11-27T05:00:00Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    const FORMAT: Config = Config::DEFAULT.set_time_precision(TimePrecision::Second {
        decimal_digits: None,
    });
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("zero nanoseconds is valid");
    t.format(&Iso8601::<{ FORMAT.encode() }>)
        .expect("UTC times format")
}

impl BlobSas {
    /// A read-only SAS for one blob, valid from five minutes ago (clock skew) until the build
    /// timeout plus an hour of margin for queueing and distribution.
    pub fn read_only_for_build(
        account: &str,
        container: &str,
        blob: &str,
        now: OffsetDateTime,
        build_timeout_minutes: u32,
        protocol: Protocol,
    ) -> BlobSas {
        // Image Builder reads 0 as its default of four hours.
        let minutes = if build_timeout_minutes == 0 {
            240
        } else {
            build_timeout_minutes
        };
        BlobSas {
            account: account.to_owned(),
            container: container.to_owned(),
            blob: blob.to_owned(),
            permissions: "r".to_owned(),
            start: now - time::Duration::minutes(5),
            expiry: now + time::Duration::minutes(i64::from(minutes) + 60),
            protocol,
        }
    }

    fn canonical_resource(&self) -> String {
        format!("/blob/{}/{}/{}", self.account, self.container, self.blob)
    }

    /// The string to sign for a service SAS with an account key (16 lines for this version).
    pub fn service_string_to_sign(&self) -> String {
        [
            self.permissions.as_str(),
            &format_time(self.start),
            &format_time(self.expiry),
            &self.canonical_resource(),
            "", // si: no stored access policy
            "", // sip: any address (the build VM's is unknown)
            self.protocol.as_str(),
            SAS_VERSION,
            "b", // sr: a blob
            "",  // snapshot time
            "",  // ses: encryption scope
            "",
            "",
            "",
            "",
            "", // rscc, rscd, rsce, rscl, rsct
        ]
        .join("\n")
    }

    /// The string to sign for a user delegation SAS.
    pub fn user_delegation_string_to_sign(&self, key: &UserDelegationKey) -> String {
        [
            self.permissions.as_str(),
            &format_time(self.start),
            &format_time(self.expiry),
            &self.canonical_resource(),
            &key.signed_oid,
            &key.signed_tid,
            &key.signed_start,
            &key.signed_expiry,
            &key.signed_service,
            &key.signed_version,
            "", // saoid
            "", // suoid
            "", // scid
            "", // sip
            self.protocol.as_str(),
            SAS_VERSION,
            "b",
            "", // snapshot time
            "", // ses
            "",
            "",
            "",
            "",
            "", // rscc, rscd, rsce, rscl, rsct
        ]
        .join("\n")
    }

    /// Signs with the storage account key (base64, as `listKeys` returns it).
    pub fn sign_with_account_key(&self, account_key: &str) -> Result<SasToken> {
        let signature = sign(account_key, &self.service_string_to_sign())
            .context("the storage account key is not valid base64")?;
        Ok(self.token(signature, &[]))
    }

    /// Signs with a user delegation key.
    pub fn sign_with_user_delegation_key(&self, key: &UserDelegationKey) -> Result<SasToken> {
        let signature = sign(&key.value, &self.user_delegation_string_to_sign(key))
            .context("the user delegation key is not valid base64")?;
        let extra = [
            ("skoid", key.signed_oid.as_str()),
            ("sktid", &key.signed_tid),
            ("skt", &key.signed_start),
            ("ske", &key.signed_expiry),
            ("sks", &key.signed_service),
            ("skv", &key.signed_version),
        ];
        Ok(self.token(signature, &extra))
    }

    fn token(&self, signature: String, extra: &[(&str, &str)]) -> SasToken {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("sv", SAS_VERSION)
            .append_pair("sr", "b")
            .append_pair("sp", &self.permissions)
            .append_pair("st", &format_time(self.start))
            .append_pair("se", &format_time(self.expiry))
            .append_pair("spr", self.protocol.as_str());
        for (k, v) in extra {
            query.append_pair(k, v);
        }
        query.append_pair("sig", &signature);
        SasToken {
            query: query.finish(),
            signature,
        }
    }
}

/// An account SAS for the task's own writes with the account key: creating the container,
/// uploading blocks, deleting the blob. Blob service only, container and object level, short-lived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSas {
    pub account: String,
    /// Permission letters in canonical order, e.g. `rcwd`.
    pub permissions: String,
    pub start: OffsetDateTime,
    pub expiry: OffsetDateTime,
    pub protocol: Protocol,
}

impl AccountSas {
    /// Create container, read, write and delete blobs, valid for `hours` from a little before `now`.
    pub fn for_task_writes(
        account: &str,
        now: OffsetDateTime,
        hours: i64,
        protocol: Protocol,
    ) -> AccountSas {
        AccountSas {
            account: account.to_owned(),
            // Read, to tell after a lost answer whether a commit was the task's own.
            permissions: "rcwd".to_owned(),
            start: now - time::Duration::minutes(5),
            expiry: now + time::Duration::hours(hours),
            protocol,
        }
    }

    /// The string to sign for an account SAS (10 lines, the last one empty-terminated).
    pub fn string_to_sign(&self) -> String {
        format!(
            "{}\n{}\nb\nco\n{}\n{}\n\n{}\n{SAS_VERSION}\n\n",
            self.account,
            self.permissions,
            format_time(self.start),
            format_time(self.expiry),
            self.protocol.as_str(),
        )
    }

    pub fn sign(&self, account_key: &str) -> Result<SasToken> {
        let signature = sign(account_key, &self.string_to_sign())
            .context("the storage account key is not valid base64")?;
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("ss", "b")
            .append_pair("srt", "co")
            .append_pair("sp", &self.permissions)
            .append_pair("st", &format_time(self.start))
            .append_pair("se", &format_time(self.expiry))
            .append_pair("spr", self.protocol.as_str())
            .append_pair("sig", &signature)
            .finish();
        Ok(SasToken { query, signature })
    }
}

fn sign(key_base64: &str, string_to_sign: &str) -> Result<String> {
    let key = BASE64.decode(key_base64.trim())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn sas() -> BlobSas {
        BlobSas::read_only_for_build(
            "devstoreaccount1",
            "imagebuilder-vststask",
            "app/42-1/app_1764219600000.zip",
            datetime!(2026-11-27 05:00:00.123 UTC),
            240,
            Protocol::HttpsOnly,
        )
    }

    #[test]
    fn validity_is_the_build_timeout_plus_an_hour_never_a_year() {
        let s = sas();
        assert_eq!(format_time(s.start), "2026-11-27T04:55:00Z");
        assert_eq!(format_time(s.expiry), "2026-11-27T10:00:00Z");
        let zero = BlobSas::read_only_for_build(
            "a",
            "c",
            "b",
            datetime!(2026-01-01 0:00 UTC),
            0,
            Protocol::HttpsOnly,
        );
        assert_eq!(format_time(zero.expiry), "2026-01-01T05:00:00Z");
        let longest = BlobSas::read_only_for_build(
            "a",
            "c",
            "b",
            datetime!(2026-01-01 0:00 UTC),
            960,
            Protocol::HttpsOnly,
        );
        assert_eq!(format_time(longest.expiry), "2026-01-01T17:00:00Z");
        assert_eq!(s.permissions, "r");
    }

    #[test]
    fn service_string_to_sign_has_sixteen_lines_in_order() {
        let s = sas().service_string_to_sign();
        let lines: Vec<&str> = s.split('\n').collect();
        assert_eq!(lines.len(), 16);
        assert_eq!(
            &lines[..9],
            [
                "r",
                "2026-11-27T04:55:00Z",
                "2026-11-27T10:00:00Z",
                "/blob/devstoreaccount1/imagebuilder-vststask/app/42-1/app_1764219600000.zip",
                "",
                "",
                "https",
                "2021-06-08",
                "b",
            ]
        );
        assert!(lines[9..].iter().all(|l| l.is_empty()));
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // Computed with Python: base64(hmac.new(b64decode(KEY), s.encode(), sha256).digest()),
        // s being the 16 lines of a 2020-12-06+ service SAS with sv=2021-06-08.
        let token = sas().sign_with_account_key(KEY).unwrap();
        assert_eq!(
            token.signature,
            "gx4mdC4iN44KYJIaXwI7+2B2lF1jnciZ0vT1TnWM21I="
        );
        assert_eq!(
            token.query,
            "sv=2021-06-08&sr=b&sp=r&st=2026-11-27T04%3A55%3A00Z&se=2026-11-27T10%3A00%3A00Z&spr=https&sig=gx4mdC4iN44KYJIaXwI7%2B2B2lF1jnciZ0vT1TnWM21I%3D"
        );
        assert_eq!(format!("{token:?}"), "SasToken(***)");
        assert!(sas().sign_with_account_key("not base64!").is_err());
    }

    #[test]
    fn user_delegation_sas_carries_the_key_fields() {
        let key = UserDelegationKey {
            signed_oid: "oid-1".into(),
            signed_tid: "tid-1".into(),
            signed_start: "2026-11-27T04:55:00Z".into(),
            signed_expiry: "2026-11-27T10:00:00Z".into(),
            signed_service: "b".into(),
            signed_version: "2021-06-08".into(),
            value: KEY.into(),
        };
        let s = sas().user_delegation_string_to_sign(&key);
        let lines: Vec<&str> = s.split('\n').collect();
        assert_eq!(lines.len(), 24);
        assert_eq!(
            &lines[4..10],
            [
                "oid-1",
                "tid-1",
                "2026-11-27T04:55:00Z",
                "2026-11-27T10:00:00Z",
                "b",
                "2021-06-08"
            ]
        );
        assert_eq!(&lines[14..17], ["https", "2021-06-08", "b"]);
        let token = sas().sign_with_user_delegation_key(&key).unwrap();
        // Computed with Python's hmac over the 24 lines of a 2020-12-06+ user delegation SAS.
        assert_eq!(
            token.signature,
            "VzzrLxy6VjlNOvQzYnaYerihBaHC0oVb0daR8ZaF8EU="
        );
        assert!(token.query.starts_with("sv=2021-06-08&sr=b&sp=r&"));
        assert!(token.query.contains("&skoid=oid-1&sktid=tid-1&skt="));
        assert!(token.query.ends_with(&format!(
            "sig={}",
            url::form_urlencoded::byte_serialize(token.signature.as_bytes()).collect::<String>()
        )));
    }

    #[test]
    fn account_sas_for_the_task_s_own_writes() {
        let sas = AccountSas::for_task_writes(
            "devstoreaccount1",
            datetime!(2026-11-27 05:00:00 UTC),
            2,
            Protocol::HttpsOnly,
        );
        assert_eq!(
            sas.string_to_sign(),
            "devstoreaccount1\nrcwd\nb\nco\n2026-11-27T04:55:00Z\n2026-11-27T07:00:00Z\n\nhttps\n2021-06-08\n\n"
        );
        let token = sas.sign(KEY).unwrap();
        // Computed with Python's hmac over the string above.
        assert_eq!(
            token.signature,
            "4Cf2PyGdswaOTGqDNNE3bWORXno6Xx9LY0LYPxbB4+g="
        );
        assert!(
            token
                .query
                .starts_with("sv=2021-06-08&ss=b&srt=co&sp=rcwd&st=")
        );
    }

    #[test]
    fn the_strings_to_sign_are_those_of_the_pinned_version() {
        // 2020-12-06 added `ses` (service and account SAS) and the 24-line user delegation SAS;
        // 2025-07-05 adds lines to the user delegation SAS ("Create a user delegation SAS").
        assert!(SAS_VERSION >= "2020-12-06" && SAS_VERSION < "2025-07-05");
        assert_eq!(SAS_VERSION, crate::storage::SERVICE_VERSION);
    }

    #[test]
    fn plain_http_endpoints_allow_http() {
        let https = url::Url::parse("https://acct.blob.core.windows.net/").unwrap();
        let http = url::Url::parse("http://127.0.0.1:10000/devstoreaccount1/").unwrap();
        assert_eq!(Protocol::for_endpoint(&https), Protocol::HttpsOnly);
        assert_eq!(Protocol::for_endpoint(&http), Protocol::HttpsAndHttp);
    }
}
