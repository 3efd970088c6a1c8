//! Artifact staging, end to end: the build path (`packagePath`) resolved, the storage account
//! (`storageAccountName`) found, the archive streamed into the `imagebuilder-vststask` container
//! under a name that says which run made it, and the read-only SAS URL Image Builder downloads it
//! with. [`Staged::remove`] deletes the blob once the build no longer needs it.
//! [`long_path_warning`] tells, from what the archiver saw, whether the tree will outgrow
//! Windows' `MAX_PATH` once extracted on a Windows image.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use azure_core::credentials::{Secret, TokenCredential};
use url::Url;

use crate::agent::{Console, PipelineContext};
use crate::archive::{ArchiveOptions, ArchiveSummary, utf16_len};
use crate::arm::ArmClient;
use crate::image_template::WINDOWS_ARTIFACTS_ROOT;
use crate::names;
use crate::plan::Os;
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

/// The longest file path Windows PowerShell 5.1 extracts to: `MAX_PATH` (260) less the
/// terminating NUL. Its `Expand-Archive` (and .NET's `ZipFile`) go through .NET Framework's
/// legacy path handling: "The fully qualified file name must be less than 260 characters, and
/// the directory name must be less than 248 characters" (PowerShell/Microsoft.PowerShell.Archive
/// issue 44), which `Expand-Archive` then hides behind an error from its own clean-up,
/// "Remove-Item : Cannot find path … because it does not exist" (issue 69).
pub const WINDOWS_MAX_FILE_PATH: usize = 259;

/// The longest folder path the same handling creates (248 less the NUL).
pub const WINDOWS_MAX_FOLDER_PATH: usize = 247;

/// On a Windows image, the warning for an archive whose longest file or folder, extracted under
/// `C:\buildArtifacts\<folder>\`, is longer than Windows PowerShell 5.1 extracts to; `None`
/// when everything fits, and always on Linux images.
pub fn long_path_warning(os: Os, folder: &str, archive: &ArchiveSummary) -> Option<String> {
    if os != Os::Windows {
        return None;
    }
    let base = format!(r"{WINDOWS_ARTIFACTS_ROOT}\{folder}\");
    let too_long = |name: &str, limit| utf16_len(&base) + utf16_len(name) > limit;
    let (what, name) = if too_long(&archive.longest_file, WINDOWS_MAX_FILE_PATH) {
        ("file", &archive.longest_file)
    } else if too_long(&archive.longest_folder, WINDOWS_MAX_FOLDER_PATH) {
        ("folder", &archive.longest_folder)
    } else {
        return None;
    };
    let path = format!("{base}{}", name.replace('/', r"\"));
    Some(format!(
        "the build path's longest {what} path will be {} characters long on the image: '{path}'. Windows PowerShell's Expand-Archive, which extracts the artifacts where tar.exe is missing (Windows Server 2016 and older), cannot create file paths of 260 characters or more (MAX_PATH) nor folder paths of 248 or more, and then fails with a misleading error such as 'Remove-Item : Cannot find path ... because it does not exist'; many Windows tools fail on such paths too. Shorten the paths inside the build path, or give the build path a shorter folder name ('{folder}' is part of every path, which starts with '{base}').",
        utf16_len(&path)
    ))
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

    // Past a few thousand entries the archive's central directory waits in an unnamed file in
    // the agent's temporary folder rather than in memory.
    let options = ArchiveOptions {
        temp_dir: Some(context.temp_directory.clone()),
        ..ArchiveOptions::default()
    };
    // Names are unique per job and start; should one be taken all the same, the upload leaves
    // the other blob alone and is made again under a fresh name.
    let mut names_tried = 0;
    let (blob, uploaded) = loop {
        names_tried += 1;
        let blob = names::blob_name(&folder, context, &names::Stamp::now(context));
        match upload::upload_archive_with(
            &store,
            request.package_path.clone(),
            &blob,
            &request.upload,
            &options,
            console,
        )
        .await
        {
            Ok(uploaded) => break (blob, uploaded),
            Err(e) if e.downcast_ref::<upload::BlobTaken>().is_some() && names_tried < 3 => {
                console.info(format!("{e}; uploading again under a fresh name"));
            }
            Err(e) => return Err(e).context("input 'packagePath': staging the build path failed"),
        }
    };
    let url = store.blob_url(&blob);
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

    fn archive(longest_file: &str, longest_folder: &str) -> ArchiveSummary {
        ArchiveSummary {
            longest_file: longest_file.to_owned(),
            longest_folder: longest_folder.to_owned(),
            ..ArchiveSummary::default()
        }
    }

    #[test]
    fn windows_paths_past_max_path_are_warned_about() {
        // `C:\buildArtifacts\webapp\` is 25 characters: 234 more make 259, which fits.
        let base = r"C:\buildArtifacts\webapp\".len();
        assert_eq!(base, 25);
        let fits = format!("deep/{}", "f".repeat(WINDOWS_MAX_FILE_PATH - base - 5));
        assert_eq!(
            long_path_warning(Os::Windows, "webapp", &archive(&fits, "deep")),
            None
        );
        let long = format!("deep/{}", "f".repeat(WINDOWS_MAX_FILE_PATH - base - 4));
        let warning = long_path_warning(Os::Windows, "webapp", &archive(&long, "deep")).unwrap();
        let shown = format!(r"C:\buildArtifacts\webapp\deep\{}", &long[5..]);
        assert!(warning.starts_with(&format!(
            "the build path's longest file path will be 260 characters long on the image: '{shown}'."
        )), "{warning}");
        for advice in [
            "Expand-Archive",
            "tar.exe",
            "file paths of 260 characters or more (MAX_PATH)",
            "misleading error",
            "Shorten the paths inside the build path",
            "a shorter folder name ('webapp' is part of every path",
        ] {
            assert!(warning.contains(advice), "{advice}: {warning}");
        }
        // Linux images have no such limit.
        assert_eq!(
            long_path_warning(Os::Linux, "webapp", &archive(&long, "deep")),
            None
        );
        // The folder's name counts: the same tree under a longer name no longer fits.
        let barely = "f".repeat(WINDOWS_MAX_FILE_PATH - base);
        assert_eq!(
            long_path_warning(Os::Windows, "webapp", &archive(&barely, "")),
            None
        );
        let warning = long_path_warning(Os::Windows, "webapp2", &archive(&barely, "")).unwrap();
        assert!(warning.contains(" 260 characters "), "{warning}");
    }

    #[test]
    fn windows_folders_past_248_characters_are_warned_about() {
        let base = r"C:\buildArtifacts\webapp\".len();
        let fits = "d".repeat(WINDOWS_MAX_FOLDER_PATH - base);
        assert_eq!(
            long_path_warning(Os::Windows, "webapp", &archive("a", &fits)),
            None
        );
        // A folder of 248 characters holding a short file: the file fits, the folder does not.
        let long = format!("{fits}d");
        let warning =
            long_path_warning(Os::Windows, "webapp", &archive(&format!("{long}/a"), &long))
                .unwrap();
        assert!(
            warning.starts_with("the build path's longest folder path will be 248 characters"),
            "{warning}"
        );
        assert!(warning.contains("folder paths of 248 or more"), "{warning}");
    }

    #[test]
    fn windows_path_lengths_count_utf16_units() {
        let base = r"C:\buildArtifacts\webapp\".len();
        // 117 emoji are 234 UTF-16 units (the limit exactly), 468 UTF-8 bytes.
        let emoji = "\u{1F600}".repeat((WINDOWS_MAX_FILE_PATH - base) / 2);
        assert_eq!(
            long_path_warning(Os::Windows, "webapp", &archive(&emoji, "")),
            None
        );
        let over = format!("{emoji}x");
        assert!(long_path_warning(Os::Windows, "webapp", &archive(&over, "")).is_some());
        // Non-ASCII in the folder's name counts the same way.
        let accents = "é".repeat(WINDOWS_MAX_FILE_PATH - r"C:\buildArtifacts\éé\".chars().count());
        assert_eq!(
            long_path_warning(Os::Windows, "éé", &archive(&accents, "")),
            None
        );
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
