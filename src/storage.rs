//! Blob storage for the build artifact: the account found through ARM by name, the way in
//! (its key, or where shared keys are forbidden the connection's own storage token), the
//! `imagebuilder-vststask` container, the read-only SAS handed to Image Builder, and deleting the
//! blob afterwards. Data-plane calls go through the official `azure_storage_blob` clients; only
//! the account-key SAS signing is our own (`crate::sas`).

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{
    ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Transport,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
    BlobServiceClient, BlobServiceClientOptions, BlockBlobClient, BlockBlobClientOptions,
};
use base64::Engine as _;
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::agent::Console;
use crate::arm::{ArmClient, ArmError, RetryPolicy};
use crate::sas::{self, AccountSas, BlobSas, Protocol, SasToken, UserDelegationKey};

/// The container the original task used; parallel runs share it, so it is never deleted.
pub const CONTAINER: &str = "imagebuilder-vststask";

const STORAGE_API_VERSION: &str = "2023-05-01";

/// The Blob service version of every data-plane request the task makes (`x-ms-version`) and of
/// every SAS it signs (`sv`); the only place it is written down.
///
/// Pinned, because the SDK's default is the newest version, and a new service version is rolled
/// out region by region and cloud by cloud: a request with a version not yet deployed where the
/// account lives is refused ("Versioning for the Azure Storage services"). 2021-06-08 is GA for
/// years, and is the Blob version Azure CLI's `latest` profile (AzureCloud, AzureChinaCloud,
/// AzureUSGovernment) sends (Azure/azure-cli `profiles/_shared.py`, `DATA_STORAGE_BLOB`). It is
/// 2020-12-06 or later, so the SAS strings to sign in `crate::sas` are that version's (with
/// `ses`, and `saoid`/`suoid`/`scid` for user delegation). Azure Stack Hub supports at most
/// 2019-07-07 (update 2008 and later: "Azure Stack Hub storage: Differences and
/// considerations"), see the README's "Storage service version". Azurite 3.35.0 accepts it.
pub const SERVICE_VERSION: &str = "2021-06-08";

/// A storage account as ARM describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageAccount {
    pub id: String,
    pub name: String,
    /// `primaryEndpoints.blob`, used as given (sovereign clouds, emulators).
    pub blob_endpoint: Url,
    pub allow_shared_key_access: Option<bool>,
    /// Who may reach the account over the network.
    pub network: NetworkAccess,
}

/// An account's network rules ("Configure Azure Storage firewalls and virtual networks").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkAccess {
    /// `publicNetworkAccess`: `Enabled`, `Disabled` (private endpoints only) or unset.
    pub public_network_access: Option<String>,
    /// `networkAcls.defaultAction`: `Allow` or `Deny` (only the listed networks).
    pub default_action: Option<String>,
    /// The subnets `networkAcls.virtualNetworkRules` admits.
    pub subnets: Vec<String>,
}

impl NetworkAccess {
    /// Only chosen networks (or none) reach the account: Image Builder's service does not.
    pub fn restricted(&self) -> bool {
        self.public_network_access
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("Disabled"))
            || self
                .default_action
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("Deny"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountResource {
    id: String,
    name: String,
    #[serde(default)]
    properties: AccountProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountProperties {
    primary_endpoints: Option<Endpoints>,
    allow_shared_key_access: Option<bool>,
    public_network_access: Option<String>,
    network_acls: Option<NetworkAcls>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkAcls {
    default_action: Option<String>,
    #[serde(default)]
    virtual_network_rules: Vec<VirtualNetworkRule>,
}

#[derive(Deserialize)]
struct VirtualNetworkRule {
    id: String,
}

#[derive(Default, Deserialize)]
struct Endpoints {
    blob: Option<String>,
}

#[derive(Deserialize)]
struct KeyList {
    #[serde(default)]
    keys: Vec<AccountKey>,
}

#[derive(Deserialize)]
struct AccountKey {
    value: String,
}

/// Finds `name` among the subscription's storage accounts (names are global and lower-case,
/// but a user may type capitals).
pub async fn find_account(
    arm: &ArmClient,
    subscription: &str,
    name: &str,
) -> Result<StorageAccount> {
    let accounts: Vec<AccountResource> = arm
        .list(
            "listing storage accounts",
            &format!("/subscriptions/{subscription}/providers/Microsoft.Storage/storageAccounts"),
            STORAGE_API_VERSION,
        )
        .await?;
    let seen = accounts.len();
    let account = accounts
        .into_iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            anyhow!(
                "input 'storageAccountName': the storage account '{name}' was not found in subscription '{subscription}' ({seen} accounts are visible to the service connection). Check the name, and that the connection's identity can read the account (Reader or Contributor on it)"
            )
        })?;
    account.into_account()
}

/// The storage accounts in one resource group (`group_id`: `/subscriptions/…/resourceGroups/…`),
/// such as the one Image Builder keeps its build logs in.
pub async fn accounts_in_group(arm: &ArmClient, group_id: &str) -> Result<Vec<StorageAccount>> {
    let accounts: Vec<AccountResource> = arm
        .list(
            "listing the staging group's storage accounts",
            &format!(
                "{}/providers/Microsoft.Storage/storageAccounts",
                group_id.trim_end_matches('/')
            ),
            STORAGE_API_VERSION,
        )
        .await?;
    accounts
        .into_iter()
        .map(AccountResource::into_account)
        .collect()
}

impl AccountResource {
    fn into_account(self) -> Result<StorageAccount> {
        let account = self;
        let blob = account
            .properties
            .primary_endpoints
            .and_then(|e| e.blob)
            .ok_or_else(|| {
                anyhow!(
                    "the storage account '{}' has no blob endpoint",
                    account.name
                )
            })?;
        let mut blob_endpoint = Url::parse(&blob).with_context(|| {
            format!(
                "the storage account '{}' has an invalid blob endpoint '{blob}'",
                account.name
            )
        })?;
        if !blob_endpoint.path().ends_with('/') {
            let path = format!("{}/", blob_endpoint.path());
            blob_endpoint.set_path(&path);
        }
        Ok(StorageAccount {
            id: account.id,
            name: account.name,
            blob_endpoint,
            allow_shared_key_access: account.properties.allow_shared_key_access,
            network: NetworkAccess {
                public_network_access: account.properties.public_network_access.clone(),
                default_action: account
                    .properties
                    .network_acls
                    .as_ref()
                    .and_then(|a| a.default_action.clone()),
                subnets: account
                    .properties
                    .network_acls
                    .as_ref()
                    .map(|a| {
                        a.virtual_network_rules
                            .iter()
                            .map(|r| r.id.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        })
    }
}

/// How the task gets into the account.
pub enum Access {
    /// The account key: the task signs its own SAS tokens.
    AccountKey(Secret),
    /// The connection's storage token; read access for the build through a user delegation SAS.
    Token,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::AccountKey(_) => "AccountKey(***)",
            Access::Token => "Token",
        })
    }
}

/// Uses the account key when the account allows shared keys and `listKeys` answers; otherwise the
/// connection's storage token, saying which path was taken and why.
pub async fn choose_access(
    arm: &ArmClient,
    account: &StorageAccount,
    console: &Console,
) -> Result<Access> {
    if account.allow_shared_key_access == Some(false) {
        console.info(format!(
            "storage account {} forbids shared keys (allowSharedKeyAccess is false): using the service connection's storage token and a user delegation SAS",
            account.name
        ));
        return Ok(Access::Token);
    }
    let url = arm.url(&format!("{}/listKeys", account.id), STORAGE_API_VERSION)?;
    match arm
        .send(
            "listing the storage account keys",
            reqwest::Method::POST,
            url,
            None,
        )
        .await
    {
        Ok(response) => {
            let keys: KeyList = response.json("listing the storage account keys")?;
            let key = keys
                .keys
                .into_iter()
                .map(|k| k.value)
                .find(|k| !k.is_empty())
                .ok_or_else(|| {
                    anyhow!("the storage account '{}' returned no keys", account.name)
                })?;
            console.set_secret(&key);
            Ok(Access::AccountKey(Secret::new(key)))
        }
        Err(e) => match e.downcast_ref::<ArmError>() {
            Some(arm_error) if matches!(arm_error.status, 401 | 403 | 409) => {
                console.info(format!(
                    "cannot list the keys of storage account {} ({} {}): using the service connection's storage token and a user delegation SAS",
                    account.name, arm_error.status, arm_error.code
                ));
                Ok(Access::Token)
            }
            _ => Err(e),
        },
    }
}

/// The artifact container of one account, reached one way.
pub struct BlobStore {
    pub account: StorageAccount,
    access: Access,
    /// The account SAS for the task's own writes, signed once and renewed near its expiry, so
    /// the agent is told about one secret rather than one per request.
    write_sas: std::sync::Mutex<Option<(SasToken, OffsetDateTime)>>,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
    console: Arc<Console>,
    /// How long to keep trying while a container of the same name is still being deleted.
    pub container_retry: RetryPolicy,
}

/// The default [`BlobStore::container_retry`]: 8 attempts over about 75 s, twice the 30 s Azure
/// documents for a deletion to finish.
pub fn container_being_deleted_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        initial_delay: std::time::Duration::from_secs(2),
        max_delay: std::time::Duration::from_secs(15),
        max_retry_after: std::time::Duration::from_secs(15),
    }
}

/// A data-plane request Storage refused: its status, and the code and message of its error
/// (`x-ms-error-code`, and the `<Error><Code/><Message/></Error>` body; "Status and error codes",
/// Azure Storage REST API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRefusal {
    pub status: u16,
    pub code: String,
    pub message: Option<String>,
}

impl StorageRefusal {
    /// The refusal an SDK error carries; `None` when Storage did not answer.
    pub fn of(error: &azure_core::Error) -> Option<StorageRefusal> {
        let azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } = error.kind()
        else {
            return None;
        };
        let body = raw_response
            .as_ref()
            .map(|r| String::from_utf8_lossy(r.body()).into_owned())
            .unwrap_or_default();
        let element = |name: &str| {
            let start = body.find(&format!("<{name}>"))? + name.len() + 2;
            let end = start + body[start..].find(&format!("</{name}>"))?;
            Some(body[start..end].trim().to_owned())
        };
        let status = u16::from(*status);
        let code = raw_response
            .as_ref()
            .and_then(|r| {
                r.headers()
                    .get_optional_str(&azure_core::http::headers::ERROR_CODE)
            })
            .map(str::to_owned)
            .or_else(|| element("Code"))
            .or_else(|| {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map(|reason| reason.replace(' ', ""))
            })
            .or_else(|| error_code.clone())
            .unwrap_or_else(|| status.to_string());
        // Storage's message ends with "RequestId:…" and "Time:…" lines; the first line says it.
        let message = element("Message")
            .and_then(|m| m.lines().next().map(str::to_owned))
            .filter(|m| !m.is_empty());
        Some(StorageRefusal {
            status,
            code,
            message,
        })
    }
}

impl std::fmt::Display for StorageRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage answered {} {}", self.status, self.code)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl BlobStore {
    pub fn new(
        account: StorageAccount,
        access: Access,
        credential: Arc<dyn TokenCredential>,
        http: reqwest::Client,
        console: Arc<Console>,
    ) -> BlobStore {
        BlobStore {
            account,
            access,
            write_sas: std::sync::Mutex::new(None),
            credential,
            http,
            console,
            container_retry: container_being_deleted_policy(),
        }
    }

    pub fn uses_account_key(&self) -> bool {
        matches!(self.access, Access::AccountKey(_))
    }

    /// The `az` command that deletes `blob`, for messages about an artifact left behind.
    pub fn delete_hint(&self, blob: &str) -> String {
        format!(
            "az storage blob delete --account-name {} --container-name {CONTAINER} --name '{blob}'",
            self.account.name
        )
    }

    /// The blob's URL without any query (safe to print).
    pub fn blob_url(&self, blob: &str) -> Url {
        let mut url = self.container_url();
        url.path_segments_mut()
            .expect("blob endpoints are base URLs")
            .extend(blob.split('/'));
        url
    }

    fn container_url(&self) -> Url {
        let mut url = self.account.blob_endpoint.clone();
        url.path_segments_mut()
            .expect("blob endpoints are base URLs")
            .pop_if_empty()
            .push(CONTAINER);
        url
    }

    /// SDK client options: our transport (proxy, trusted roots) and bounded per-request retries.
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(500),
                max_retries: 5,
                max_total_elapsed: azure_core::time::Duration::seconds(120),
                max_delay: azure_core::time::Duration::seconds(15),
            }),
            ..Default::default()
        }
    }

    /// A short-lived account SAS for the task's own writes, announced as a secret.
    fn write_sas(&self, key: &Secret) -> Result<SasToken> {
        let mut cached = self.write_sas.lock().unwrap_or_else(|e| e.into_inner());
        let now = OffsetDateTime::now_utc();
        if let Some((sas, expiry)) = cached.as_ref()
            && *expiry - now > time::Duration::minutes(30)
        {
            return Ok(sas.clone());
        }
        let grant = AccountSas::for_task_writes(
            &self.account.name,
            now,
            // Long enough for a large upload over a slow link; renewed when a later call (the
            // blob's deletion after a long build) finds it close to expiry.
            6,
            Protocol::for_endpoint(&self.account.blob_endpoint),
        );
        let sas = grant.sign(key.secret())?;
        self.console.set_secret(&sas.signature);
        self.console.set_secret(&sas.query);
        *cached = Some((sas.clone(), grant.expiry));
        Ok(sas)
    }

    /// `url` with the write SAS when using the key, and the credential to pass the SDK.
    fn authorize(&self, mut url: Url) -> Result<(Url, Option<Arc<dyn TokenCredential>>)> {
        match &self.access {
            Access::AccountKey(key) => {
                let sas = self.write_sas(key)?;
                url.set_query(Some(&sas.query));
                Ok((url, None))
            }
            Access::Token => Ok((url, Some(Arc::clone(&self.credential)))),
        }
    }

    /// Creates the container when it does not exist yet.
    ///
    /// Of the 409 answers only `ContainerAlreadyExists` means there is a container to use.
    /// `ContainerBeingDeleted` means a container of that name was just deleted: "after you delete
    /// a container, you can't create a container with the same name for at least 30 seconds"
    /// and the attempt fails with 409 Conflict ("Delete and restore a blob container", Azure
    /// Storage docs; "Delete Container", REST API), so that one is tried again, within
    /// `container_retry`. Any other refusal (`ContainerDisabled`, `AuthorizationFailure`, …) is
    /// an error with Storage's code and message ("Blob Storage error codes").
    pub async fn ensure_container(&self) -> Result<()> {
        let (url, credential) = self.authorize(self.container_url())?;
        let client = BlobContainerClient::new(
            url,
            credential,
            Some(BlobContainerClientOptions {
                client_options: self.client_options(),
                version: SERVICE_VERSION.to_owned(),
            }),
        )?;
        let started = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let error = match client.create(None).await {
                Ok(_) => {
                    self.console.info(format!("created container {CONTAINER}"));
                    return Ok(());
                }
                Err(e) => e,
            };
            let refusal = StorageRefusal::of(&error);
            match refusal.as_ref().map(|r| r.code.as_str()) {
                Some("ContainerAlreadyExists") => return Ok(()),
                Some("ContainerBeingDeleted") if attempt < self.container_retry.max_attempts => {
                    let wait = self
                        .container_retry
                        .delay(attempt, None, crate::arm::jitter());
                    self.console.info(format!(
                        "container {CONTAINER} in storage account {} is still being deleted (ContainerBeingDeleted); trying again in {:.1} s (attempt {} of {})",
                        self.account.name,
                        wait.as_secs_f64(),
                        attempt + 1,
                        self.container_retry.max_attempts
                    ));
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Some("ContainerBeingDeleted") => anyhow::bail!(
                    "cannot create container {CONTAINER} in storage account {}: Azure still answered 409 ContainerBeingDeleted after {attempt} attempts over {} s. A container of that name was deleted recently, and Azure refuses to create it again until the deletion has finished (at least 30 seconds). Run the pipeline again in a few minutes, and make sure nothing deletes the container {CONTAINER} (a cleanup job or script, a lifecycle rule): parallel builds share it",
                    self.account.name,
                    started.elapsed().as_secs()
                ),
                _ => {
                    let what = match &refusal {
                        Some(r) => r.to_string(),
                        None => crate::auth::error_chain(&error),
                    };
                    return Err(anyhow!(what)).with_context(|| {
                        format!(
                            "cannot create container {CONTAINER} in storage account {}{}",
                            self.account.name,
                            self.token_access_hint()
                        )
                    });
                }
            }
        }
    }

    fn token_access_hint(&self) -> &'static str {
        match self.access {
            Access::Token => {
                " with the service connection's token: give its identity the 'Storage Blob Data Contributor' role on the account"
            }
            Access::AccountKey(_) => "",
        }
    }

    /// A client for staging the blob's blocks and committing them.
    pub fn block_blob_client(&self, blob: &str) -> Result<BlockBlobClient> {
        let (url, credential) = self.authorize(self.blob_url(blob))?;
        Ok(BlockBlobClient::new(
            url,
            credential,
            Some(BlockBlobClientOptions {
                client_options: self.client_options(),
                version: SERVICE_VERSION.to_owned(),
            }),
        )?)
    }

    fn blob_client(&self, blob: &str) -> Result<BlobClient> {
        let (url, credential) = self.authorize(self.blob_url(blob))?;
        Ok(BlobClient::new(
            url,
            credential,
            Some(BlobClientOptions {
                client_options: self.client_options(),
                version: SERVICE_VERSION.to_owned(),
            }),
        )?)
    }

    /// The blob's metadata, `None` when there is no such blob.
    pub async fn blob_metadata(
        &self,
        blob: &str,
    ) -> Result<Option<std::collections::HashMap<String, String>>> {
        use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders as _;
        match self.blob_client(blob)?.get_properties(None).await {
            Ok(response) => Ok(Some(response.metadata()?)),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(None),
            Err(e) => Err(anyhow!(crate::auth::error_chain(&e))).with_context(|| {
                format!(
                    "cannot read blob {CONTAINER}/{blob} in storage account {}",
                    self.account.name
                )
            }),
        }
    }

    /// Deletes the blob; a blob already gone is fine.
    pub async fn delete_blob(&self, blob: &str) -> Result<()> {
        let client = self.blob_client(blob)?;
        match client.delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(anyhow!(crate::auth::error_chain(&e))).with_context(|| {
                format!(
                    "cannot delete blob {CONTAINER}/{blob} from storage account {}",
                    self.account.name
                )
            }),
        }
    }

    /// The read-only SAS Image Builder downloads the artifact with, announced as a secret.
    pub async fn read_sas(&self, blob: &str, build_timeout_minutes: u32) -> Result<SasToken> {
        let grant = BlobSas::read_only_for_build(
            &self.account.name,
            CONTAINER,
            blob,
            OffsetDateTime::now_utc(),
            build_timeout_minutes,
            Protocol::for_endpoint(&self.account.blob_endpoint),
        );
        let token = match &self.access {
            Access::AccountKey(key) => grant.sign_with_account_key(key.secret())?,
            Access::Token => {
                let key = self.user_delegation_key(&grant).await?;
                grant.sign_with_user_delegation_key(&key)?
            }
        };
        self.console.set_secret(&token.signature);
        self.console.set_secret(&token.query);
        Ok(token)
    }

    async fn user_delegation_key(&self, grant: &BlobSas) -> Result<UserDelegationKey> {
        let client = BlobServiceClient::new(
            self.account.blob_endpoint.clone(),
            Some(Arc::clone(&self.credential)),
            Some(BlobServiceClientOptions {
                client_options: self.client_options(),
                version: SERVICE_VERSION.to_owned(),
            }),
        )?;
        let key_info = azure_storage_blob::models::KeyInfo {
            start: Some(grant.start),
            expiry: Some(grant.expiry),
            ..Default::default()
        };
        let key = client
            .get_user_delegation_key(key_info.try_into()?, None)
            .await
            .map_err(|e| anyhow!(crate::auth::error_chain(&e)))
            .with_context(|| {
                format!(
                    "cannot get a user delegation key from storage account {}: give the service connection's identity the 'Storage Blob Data Contributor' role on it",
                    self.account.name
                )
            })?
            .into_model()?;
        let missing = |what: &str| {
            anyhow!(
                "the user delegation key from {} has no {what}",
                self.account.name
            )
        };
        let value = key.value.ok_or_else(|| missing("value"))?;
        let value = base64::engine::general_purpose::STANDARD.encode(value);
        self.console.set_secret(&value);
        Ok(UserDelegationKey {
            signed_oid: key.signed_oid.ok_or_else(|| missing("signed object id"))?,
            signed_tid: key.signed_tid.ok_or_else(|| missing("signed tenant id"))?,
            signed_start: sas::format_time(key.signed_start.ok_or_else(|| missing("start"))?),
            signed_expiry: sas::format_time(key.signed_expiry.ok_or_else(|| missing("expiry"))?),
            signed_service: key.signed_service.ok_or_else(|| missing("service"))?,
            signed_version: key.signed_version.ok_or_else(|| missing("version"))?,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::error::ErrorKind;
    use azure_core::http::RawResponse;
    use azure_core::http::headers::{ERROR_CODE, Headers};

    fn refused(status: StatusCode, header: Option<&str>, body: &str) -> azure_core::Error {
        let mut headers = Headers::new();
        if let Some(code) = header {
            headers.insert(ERROR_CODE, code.to_owned());
        }
        let kind = ErrorKind::HttpResponse {
            status,
            error_code: header.map(str::to_owned),
            raw_response: Some(Box::new(RawResponse::from_bytes(
                status,
                headers,
                body.to_owned(),
            ))),
        };
        azure_core::Error::with_message(kind, format!("{status}: {body}"))
    }

    #[test]
    fn a_refusal_names_storage_s_code_and_the_first_line_of_its_message() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ContainerBeingDeleted</Code><Message>The specified container is being deleted.\nRequestId:6ab1\nTime:2026-11-27T05:00:00.0000000Z</Message></Error>";
        let refusal = StorageRefusal::of(&refused(
            StatusCode::Conflict,
            Some("ContainerBeingDeleted"),
            body,
        ))
        .unwrap();
        assert_eq!(
            refusal,
            StorageRefusal {
                status: 409,
                code: "ContainerBeingDeleted".into(),
                message: Some("The specified container is being deleted.".into()),
            }
        );
        assert_eq!(
            refusal.to_string(),
            "Storage answered 409 ContainerBeingDeleted: The specified container is being deleted."
        );
        // The header is what Storage always sends; the body's code when it is missing.
        let from_body = StorageRefusal::of(&refused(StatusCode::Conflict, None, body)).unwrap();
        assert_eq!(from_body.code, "ContainerBeingDeleted");
        // No body (a HEAD, a proxy's bare answer): the status stands in.
        let bare = StorageRefusal::of(&refused(StatusCode::Forbidden, None, "")).unwrap();
        assert_eq!(bare.to_string(), "Storage answered 403 Forbidden");
        let io = azure_core::Error::with_message(ErrorKind::Io, "reset");
        assert_eq!(StorageRefusal::of(&io), None);
    }

    #[test]
    fn waits_for_a_container_being_deleted_outlast_azure_s_30_seconds_and_stay_bounded() {
        let policy = container_being_deleted_policy();
        let (least, most) = (1..policy.max_attempts).fold((0.0, 0.0), |(l, m), attempt| {
            (
                l + policy.delay(attempt, None, 0.0).as_secs_f64(),
                m + policy.delay(attempt, None, 1.0).as_secs_f64(),
            )
        });
        assert!(least >= 60.0, "{least} s");
        assert!(most <= 90.0, "{most} s");
    }
}
