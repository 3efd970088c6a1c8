//! Artifact staging, end to end: the build path (`packagePath`) resolved, the storage account
//! (`storageAccountName`) found, the archive streamed into the `imagebuilder-vststask` container
//! under a name that says which run made it, and the read-only SAS URL Image Builder downloads it
//! with. [`Staged::remove`] deletes the blob once the build no longer needs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use azure_core::credentials::{Secret, TokenCredential};
use url::Url;

use crate::agent::{Console, PipelineContext};
use crate::archive::ArchiveOptions;
use crate::arm::ArmClient;
use crate::storage::{self, BlobStore, CONTAINER};
use crate::upload::{self, UploadSettings, Uploaded};

/// The build path as the user gave it, made absolute against the pipeline's default working
/// directory (the agent already does this for `filePath` inputs; a terminal run may not).
pub fn resolve_package_path(input: &str, context: &PipelineContext) -> PathBuf {
    let path = Path::new(input.trim());
    if path.is_absolute() {
        path.to_owned()
    } else {
        context.working_directory.join(path)
    }
}

/// `<folder>/<run id>-<attempt>/<folder>_<epoch ms>.zip`, the original task's layout, with the
/// build id where there is no release and `local` outside a pipeline (never "undefined").
pub fn blob_name(folder: &str, context: &PipelineContext, epoch_ms: u128) -> String {
    let run = context.run_id().unwrap_or("local");
    format!(
        "{folder}/{run}-{}/{folder}_{epoch_ms}.zip",
        context.attempt()
    )
}

/// Where the artifact is staged.
pub struct StagingRequest<'a> {
    pub subscription: &'a str,
    pub storage_account: &'a str,
    pub package_path: PathBuf,
    pub build_timeout_minutes: u32,
    pub upload: UploadSettings,
}

/// The uploaded artifact.
pub struct Staged {
    pub store: BlobStore,
    pub blob: String,
    /// The blob's URL without a query: safe to print.
    pub url: Url,
    /// The URL with the read-only SAS (a secret, announced).
    pub download_url: Secret,
    pub folder: String,
    pub uploaded: Uploaded,
}

impl Staged {
    /// Deletes the blob. The container stays: parallel runs share it.
    pub async fn remove(&self, console: &Console) -> Result<()> {
        console.info(format!("deleting storage blob {CONTAINER}\\{}", self.blob));
        self.store.delete_blob(&self.blob).await.with_context(|| {
            format!(
                "the artifact {} was left behind; delete it with: {}",
                self.url,
                self.store.delete_hint(&self.blob)
            )
        })
    }
}

/// Finds the account, uploads the archive and signs the download SAS.
pub async fn stage(
    arm: &ArmClient,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    request: StagingRequest<'_>,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<Staged> {
    let folder =
        crate::archive::folder_name(&request.package_path).context("input 'packagePath'")?;
    console.info(format!(
        "getting storage account details for {}",
        request.storage_account
    ));
    let account = storage::find_account(arm, request.subscription, request.storage_account).await?;
    let access = storage::choose_access(arm, &account, console).await?;
    let store = BlobStore::new(account, access, credential, http, Arc::clone(console));
    store.ensure_container().await?;

    let epoch_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let blob = blob_name(&folder, context, epoch_ms);
    let url = store.blob_url(&blob);
    // Past a few thousand entries the archive's central directory waits in an unnamed file in
    // the agent's temporary folder rather than in memory.
    let options = ArchiveOptions {
        temp_dir: Some(context.temp_directory.clone()),
        ..ArchiveOptions::default()
    };
    let uploaded = upload::upload_archive_with(
        &store,
        request.package_path.clone(),
        &blob,
        &request.upload,
        &options,
        console,
    )
    .await
    .context("input 'packagePath': staging the build path failed")?;
    let archive = &uploaded.archive;
    console.info(format!(
        "created archive {url} ({} files, {} folders, {:.1} MiB from {:.1} MiB, {} stored and {} deflated, {} blocks, sha256 {})",
        archive.files,
        archive.directories,
        uploaded.bytes as f64 / 1048576.0,
        archive.input_bytes as f64 / 1048576.0,
        archive.stored_files,
        archive.deflated_files,
        uploaded.blocks,
        uploaded.sha256_hex()
    ));
    console.info(upload::progress_line(uploaded.bytes, uploaded.elapsed));

    let sas = match store.read_sas(&blob, request.build_timeout_minutes).await {
        Ok(sas) => sas,
        Err(e) => {
            // Nothing will read the blob: take it away again before failing.
            let _ = store.delete_blob(&blob).await;
            return Err(e);
        }
    };
    let mut download_url = url.clone();
    download_url.set_query(Some(&sas.query));
    console.set_secret(download_url.as_str());
    Ok(Staged {
        store,
        blob,
        url,
        download_url: Secret::new(download_url.to_string()),
        folder,
        uploaded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> PipelineContext {
        PipelineContext::from_env(&crate::agent::Environment::from_pairs(
            pairs.iter().copied(),
        ))
    }

    #[test]
    fn blob_names_follow_the_original_layout_without_undefined() {
        let release = ctx(&[
            ("RELEASE_RELEASEID", "7"),
            ("RELEASE_ATTEMPTNUMBER", "2"),
            ("BUILD_BUILDID", "42"),
        ]);
        assert_eq!(
            blob_name("webapp", &release, 1764219600000),
            "webapp/7-2/webapp_1764219600000.zip"
        );
        let build = ctx(&[("BUILD_BUILDID", "42"), ("SYSTEM_JOBATTEMPT", "3")]);
        assert_eq!(blob_name("webapp", &build, 1), "webapp/42-3/webapp_1.zip");
        let first = ctx(&[("BUILD_BUILDID", "42")]);
        assert_eq!(blob_name("_drop", &first, 1), "_drop/42-1/_drop_1.zip");
        let terminal = ctx(&[]);
        let name = blob_name("my app", &terminal, 5);
        assert_eq!(name, "my app/local-1/my app_5.zip");
        assert!(!name.contains("undefined"));
    }

    #[test]
    fn package_paths_resolve_against_the_working_directory() {
        let c = ctx(&[("SYSTEM_DEFAULTWORKINGDIRECTORY", "/agent/_work/r1/a")]);
        assert_eq!(
            resolve_package_path("drop/webapp", &c),
            PathBuf::from("/agent/_work/r1/a/drop/webapp")
        );
        assert_eq!(
            resolve_package_path(" /abs/path ", &c),
            PathBuf::from("/abs/path")
        );
    }
}
