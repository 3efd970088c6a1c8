//! Blobs the emulated Image Builder writes into Azurite as the real service writes them into
//! storage: packer logs (append blobs, written as the build goes) and VHDs in the staging account,
//! VHDs in a user's account. Signed with the account's shared key, as the service (holding its own
//! keys or role) needs no SAS.

use anyhow::{Result, bail};
use time::macros::format_description;
use url::Url;

use crate::{config::StorageAccountConfig, shared_key, state::now};

fn date() -> Result<String> {
    Ok(now().format(format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))?)
}

/// Fails with Storage's answer unless `r` succeeded (or answered `also_fine`).
async fn checked(r: reqwest::Response, also_fine: Option<u16>, what: String) -> Result<()> {
    let status = r.status();
    if status.is_success() || Some(status.as_u16()) == also_fine {
        return Ok(());
    }
    bail!("{what}: {status} {}", r.text().await.unwrap_or_default())
}

/// Whether the account's data plane is wired to Azurite (not a public-cloud placeholder).
pub fn wired(account: &StorageAccountConfig) -> bool {
    base(account).is_ok()
}

/// The account's Azurite base URL; refuses the public-cloud placeholder endpoints a config has
/// before [`crate::Config::use_azurite`].
fn base(account: &StorageAccountConfig) -> Result<Url> {
    let base = Url::parse(&account.blob_endpoint)?;
    if base
        .host_str()
        .is_some_and(|h| h.ends_with(".core.windows.net"))
    {
        bail!(
            "storage account {} still has its public-cloud placeholder endpoint {base} (no Azurite wired in)",
            account.name
        );
    }
    Ok(base)
}

async fn send(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    method: &str,
    url: Url,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<reqwest::Response> {
    let date = date()?;
    let len = body.len().to_string();
    let mut headers = vec![
        ("x-ms-date", date.as_str()),
        ("x-ms-version", shared_key::STORAGE_VERSION),
    ];
    if method == "PUT" {
        headers.push(("content-length", len.as_str()));
    }
    headers.extend_from_slice(extra);
    let auth = shared_key::authorization(&account.name, &account.key, method, &url, &headers)?;
    let mut request = http
        .request(method.parse()?, url)
        .header("authorization", auth)
        .body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    Ok(request.send().await?)
}

/// The URL of `container/blob` in `account`.
pub fn url(account: &StorageAccountConfig, container: &str, blob: &str) -> Result<Url> {
    let mut url = base(account)?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("{} cannot take a path", account.blob_endpoint))?
        .pop_if_empty()
        .push(container)
        .extend(blob.split('/'));
    Ok(url)
}

/// Creates `container` in `account`; one that exists already is fine.
async fn ensure_container(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
) -> Result<()> {
    let mut container_url = base(account)?;
    container_url
        .path_segments_mut()
        .map_err(|_| anyhow::anyhow!("{} cannot take a path", account.blob_endpoint))?
        .pop_if_empty()
        .push(container);
    container_url.set_query(Some("restype=container"));
    let r = send(http, account, "PUT", container_url, &[], Vec::new()).await?;
    checked(r, Some(409), format!("creating container {container}")).await?;
    Ok(())
}

/// Writes `content` as a block blob, creating the container when needed.
pub async fn put(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
    blob: &str,
    content: Vec<u8>,
    content_type: &str,
) -> Result<Url> {
    put_blob(
        http,
        account,
        container,
        blob,
        "BlockBlob",
        content,
        content_type,
    )
    .await
}

/// Creates (or replaces with an empty one) the append blob `container/blob`, creating the
/// container when needed (Put Blob with `x-ms-blob-type: AppendBlob` and no body).
pub async fn create_append(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
    blob: &str,
    content_type: &str,
) -> Result<Url> {
    put_blob(
        http,
        account,
        container,
        blob,
        "AppendBlob",
        Vec::new(),
        content_type,
    )
    .await
}

/// Put Blob of `kind` (`BlockBlob` with its content, `AppendBlob` empty), creating the
/// container when needed.
async fn put_blob(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
    blob: &str,
    kind: &str,
    content: Vec<u8>,
    content_type: &str,
) -> Result<Url> {
    ensure_container(http, account, container).await?;
    let target = url(account, container, blob)?;
    let r = send(
        http,
        account,
        "PUT",
        target.clone(),
        &[("x-ms-blob-type", kind), ("content-type", content_type)],
        content,
    )
    .await?;
    checked(r, None, format!("writing {kind} {container}/{blob}")).await?;
    Ok(target)
}

/// The largest block Append Block takes at the emulator's service version (4 MiB before
/// 2019-12-12, 100 MiB since; "Append Block" REST reference). The smaller bound is used.
const MAX_APPEND_BLOCK: usize = 4 * 1024 * 1024;

/// Appends `content` to the append blob `container/blob` (`PUT ?comp=appendblock`, in blocks of
/// at most 4 MiB). An empty `content` writes nothing (Storage refuses an empty block).
pub async fn append(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
    blob: &str,
    content: &[u8],
) -> Result<()> {
    let mut target = url(account, container, blob)?;
    target.set_query(Some("comp=appendblock"));
    for block in content.chunks(MAX_APPEND_BLOCK) {
        let r = send(http, account, "PUT", target.clone(), &[], block.to_vec()).await?;
        checked(r, None, format!("appending to {container}/{blob}")).await?;
    }
    Ok(())
}

/// Deletes a blob; one already gone is fine.
pub async fn delete(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    container: &str,
    blob: &str,
) -> Result<()> {
    let r = send(
        http,
        account,
        "DELETE",
        url(account, container, blob)?,
        &[],
        Vec::new(),
    )
    .await?;
    checked(r, Some(404), format!("deleting {container}/{blob}")).await?;
    Ok(())
}

/// A tiny fixed-format VHD: zeroed data and the 512-byte footer whose cookie is `conectix`
/// (Microsoft's "Virtual Hard Disk Image Format Specification"). Image Builder writes VHDs as
/// page blobs; the emulator writes a block blob, which reads the same for a client.
pub fn fixed_vhd(label: &str) -> Vec<u8> {
    let mut vhd = vec![0u8; 1024];
    let footer = &mut vhd[512..];
    footer[..8].copy_from_slice(b"conectix");
    footer[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    let label = label.as_bytes();
    let n = label.len().min(427);
    footer[85..85 + n].copy_from_slice(&label[..n]); // in the reserved area, for tests
    vhd
}
