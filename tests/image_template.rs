//! The template built from the plan, checked three ways:
//!
//! * every combination of source, distributor and customization validates against the real
//!   2024-02-01 swagger (`../shared/specs`, or `AIB_SPECS_DIR`; skipped with a message when
//!   absent, a failure when `CI` is set);
//! * the generated Linux steps really run: under `dash` and `bash`, they download an archive
//!   made by `archive::write_archive` from a local HTTP server (curl, wget, or python3 alone),
//!   check its SHA-256 (a tampered archive is refused), extract it with `unzip` or python3
//!   (modes kept) into a folder with a hostile name (quotes, `$`, backticks, Unicode, and the
//!   `[ ] { } * ?` that curl reads as URL globs and `unzip` as wildcards), and remove it again;
//! * answers read back into the same types: the spec's examples and the emulator's GET.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use aib_emulator::swagger::SwaggerSpec;
use aib_emulator::{Config, Emulator, defaults};
use aib_task::agent::PipelineContext;
use aib_task::image_template::{
    self, ArtifactRef, Customizer, ImageTemplate, ProvisioningState, RunOutput, Source,
    TemplateOptions, build_template, build_template_with, step,
};
use aib_task::plan::{
    self, ArtifactDelivery, BuildPlan, BuildVm, Customization, Distribution, ErrorHandling,
    GalleryVersion, OnError, Os, Replica, Validation,
};
use aib_task::resource_id::{Kind, ResourceId, parse};
use sha2::Digest as _;

const TEMPLATE_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}";
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups";
const SAS_URL: &str = "https://acct.blob.core.windows.net/imagebuilder-vststask/webapp/42-1/webapp_1.zip?sv=2022-11-02&sr=b&sp=r&spr=https&sig=VGhpc0lzU2VjcmV0%3D";

/// A folder name that breaks naive quoting in both shells.
const NASTY_FOLDER: &str = "_my app's $HOME `id` \"q\" ünï";

fn id(kind: Kind, tail: &str) -> ResourceId {
    parse(kind, &format!("{SUB}/{tail}")).unwrap()
}

fn base_plan(os: Os, source: plan::Source, distribution: Distribution) -> BuildPlan {
    BuildPlan {
        subscription_id: "00000000-0000-0000-0000-000000000000".into(),
        resource_group: "rg-aib".into(),
        location: "westeurope".into(),
        identity: id(
            Kind::UserAssignedIdentity,
            "rg-aib/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib",
        ),
        template_name: "t_42_1764219600000".into(),
        template_name_given: false,
        source,
        customization: Customization {
            os,
            inline_script: vec![],
            run_elevated: false,
            run_as_system: false,
            windows_restart: false,
            windows_update: false,
            cleanup_artifacts: false,
        },
        package_path: PathBuf::from("/agent/_work/r1/a/webapp"),
        storage_account: "aibstaging".into(),
        distribution,
        vm_size: None,
        os_disk_size_gb: None,
        subnet: None,
        build_timeout_minutes: 240,
        staging_resource_group: None,
        image_tags: vec![],
        keep_template_on_failure: true,
        wait_for_template_deletion: false,
        stream_build_log: true,
        validation: None,
        error_handling: Default::default(),
        optimize_vm_boot: false,
        build_vm: Default::default(),
        managed_resource_tags: Vec::new(),
        artifact_delivery: Default::default(),
        extra_customizers: Vec::new(),
    }
}

fn sources() -> Vec<plan::Source> {
    vec![
        plan::Source::Marketplace {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "server".into(),
            version: "latest".into(),
        },
        plan::Source::ManagedImage {
            image_id: id(
                Kind::ManagedImage,
                "rg/providers/Microsoft.Compute/images/base",
            ),
        },
        plan::Source::SharedImageVersion {
            image_version_id: id(
                Kind::GalleryImageVersion,
                "rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.2.3",
            ),
        },
    ]
}

fn replica(region: &str, count: u32) -> Replica {
    Replica {
        region: region.into(),
        count,
    }
}

fn subnet(name: &str) -> ResourceId {
    id(
        Kind::Subnet,
        &format!("rg/providers/Microsoft.Network/virtualNetworks/v/subnets/{name}"),
    )
}

fn distributions() -> Vec<Distribution> {
    vec![
        Distribution::ManagedImage {
            image_id: id(
                Kind::ManagedImage,
                "rg/providers/Microsoft.Compute/images/out",
            ),
            location: "westeurope".into(),
        },
        Distribution::SharedImage {
            gallery_image_id: id(
                Kind::GalleryImage,
                "rg/providers/Microsoft.Compute/galleries/g/images/i",
            ),
            regions: vec![replica("westeurope", 2), replica("eastus2", 1)],
            version: GalleryVersion::Exact("1.4.0".into()),
            exclude_from_latest: true,
            storage_account_type: Some("Standard_ZRS".into()),
        },
        Distribution::SharedImage {
            gallery_image_id: id(
                Kind::GalleryImage,
                "rg/providers/Microsoft.Compute/galleries/g/images/i",
            ),
            regions: vec![replica("westeurope", 1)],
            version: GalleryVersion::Default,
            exclude_from_latest: false,
            storage_account_type: None,
        },
        Distribution::SharedImage {
            gallery_image_id: id(
                Kind::GalleryImage,
                "rg/providers/Microsoft.Compute/galleries/g/images/i",
            ),
            regions: Vec::new(),
            version: GalleryVersion::Latest { major: Some(2) },
            exclude_from_latest: false,
            storage_account_type: None,
        },
        Distribution::SharedImage {
            gallery_image_id: id(
                Kind::GalleryImage,
                "rg/providers/Microsoft.Compute/galleries/g/images/i",
            ),
            regions: vec![replica("northeurope", 3)],
            version: GalleryVersion::Source,
            exclude_from_latest: false,
            storage_account_type: Some("Premium_LRS".into()),
        },
        Distribution::Vhd,
    ]
}

fn pipeline() -> PipelineContext {
    PipelineContext {
        in_pipeline: true,
        release_id: Some("7".into()),
        release_attempt: Some("2".into()),
        build_id: Some("42".into()),
        collection_uri: Some("https://dev.azure.com/contoso/".into()),
        team_project: Some("Images & More".into()),
        definition_name: Some("golden <image> 100%".into()),
        repository: Some("infra/images".into()),
        source_version: Some("9143bdf0a1c2".into()),
        ..PipelineContext::default()
    }
}

/// One named customization variant.
struct Variant {
    name: &'static str,
    os: Os,
    size: u64,
    folder: &'static str,
    apply: fn(&mut BuildPlan),
}

fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "linux, small archive, no script",
            os: Os::Linux,
            size: 4096,
            folder: "webapp",
            apply: |_| {},
        },
        Variant {
            name: "linux, large archive, script, cleanup, vm profile",
            os: Os::Linux,
            size: image_template::FILE_CUSTOMIZER_MAX_BYTES * 3,
            folder: NASTY_FOLDER,
            apply: |p| {
                p.customization.inline_script = vec![
                    "sudo mkdir -p /opt/app".into(),
                    "sudo cp -r \"/tmp/webapp/\"* /opt/app/".into(),
                ];
                p.customization.cleanup_artifacts = true;
                p.vm_size = Some("Standard_D2s_v5".into());
                p.os_disk_size_gb = Some(64);
                p.subnet = Some(id(
                    Kind::Subnet,
                    "rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
                ));
                p.staging_resource_group = Some(id(Kind::ResourceGroup, "rg-staging"));
                p.image_tags = vec![("team".into(), "platform".into())];
                p.build_timeout_minutes = 960;
            },
        },
        Variant {
            name: "windows, plain",
            os: Os::Windows,
            size: 4096,
            folder: "webapp",
            apply: |p| p.customization.inline_script = vec!["Write-Host hello".into()],
        },
        Variant {
            name: "windows, elevated as system, restart, update, cleanup",
            os: Os::Windows,
            size: image_template::FILE_CUSTOMIZER_MAX_BYTES * 3,
            folder: NASTY_FOLDER,
            apply: |p| {
                p.customization.inline_script =
                    vec![r"& 'C:\buildArtifacts\webapp\setup.ps1'".into()];
                p.customization.run_elevated = true;
                p.customization.run_as_system = true;
                p.customization.windows_restart = true;
                p.customization.windows_update = true;
                p.customization.cleanup_artifacts = true;
                p.os_disk_size_gb = Some(256);
            },
        },
        Variant {
            name: "windows, elevated only",
            os: Os::Windows,
            size: 4096,
            folder: "webapp",
            apply: |p| {
                p.customization.inline_script = vec!["Write-Host elevated".into()];
                p.customization.run_elevated = true;
                p.customization.windows_update = true;
            },
        },
        Variant {
            name: "linux, every capability: validation, abort, optimize, identities, isolated network, staging tags, in-VM delivery, customizers file",
            os: Os::Linux,
            size: 4096,
            folder: "webapp",
            apply: |p| {
                p.customization.inline_script = vec!["sudo /tmp/webapp/install.sh".into()];
                p.validation = Some(Validation {
                    script: vec!["test -x /opt/webapp/run".into()],
                    continue_distribute_on_failure: true,
                    source_validation_only: false,
                });
                p.error_handling = ErrorHandling {
                    on_customizer_error: OnError::Abort,
                    on_validation_error: OnError::Abort,
                };
                p.optimize_vm_boot = true;
                p.subnet = Some(subnet("build"));
                p.build_vm = BuildVm {
                    identities: vec![id(
                        Kind::UserAssignedIdentity,
                        "rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/build-vm",
                    )],
                    container_instance_subnet: Some(subnet("aci")),
                    proxy_vm_size: None,
                };
                p.managed_resource_tags = vec![("costCenter".into(), "1234".into())];
                p.artifact_delivery = ArtifactDelivery::Vm;
                p.extra_customizers = serde_json::from_value(serde_json::json!([
                    {"type": "Shell", "name": "harden", "scriptUri": "https://example.com/harden.sh",
                     "sha256Checksum": "ab".repeat(32)},
                    {"type": "File", "name": "motd", "sourceUri": "https://example.com/motd",
                     "destination": "/tmp/motd"}
                ]))
                .unwrap();
            },
        },
        Variant {
            name: "windows, validation with a proxy VM, customizers file",
            os: Os::Windows,
            size: 4096,
            folder: "webapp",
            apply: |p| {
                p.validation = Some(Validation {
                    script: vec!["if (-not (Test-Path C:\\app)) { exit 1 }".into()],
                    continue_distribute_on_failure: false,
                    source_validation_only: false,
                });
                p.subnet = Some(subnet("build"));
                p.build_vm.proxy_vm_size = Some("Standard_A2_v2".into());
                p.extra_customizers = serde_json::from_value(serde_json::json!([
                    {"type": "PowerShell", "name": "features", "inline": ["Install-WindowsFeature Web-Server"],
                     "runElevated": true, "validExitCodes": [0, 3010]},
                    {"type": "WindowsRestart", "restartTimeout": "10m"},
                    {"type": "WindowsUpdate", "searchCriteria": "IsInstalled=0", "updateLimit": 40}
                ]))
                .unwrap();
            },
        },
        Variant {
            name: "linux, source validation only",
            os: Os::Linux,
            size: 4096,
            folder: "webapp",
            apply: |p| {
                p.validation = Some(Validation {
                    script: vec!["test -d /etc".into()],
                    continue_distribute_on_failure: false,
                    source_validation_only: true,
                });
            },
        },
    ]
}

fn spec() -> Option<SwaggerSpec> {
    match SwaggerSpec::default_image_builder_path(image_template::API_VERSION) {
        Some(path) => Some(SwaggerSpec::load(&path).expect("the swagger loads")),
        None => {
            aib_emulator::swagger::missing_spec(&format!(
                "the Image Builder {} swagger",
                image_template::API_VERSION
            ));
            None
        }
    }
}

#[test]
fn every_combination_is_valid_against_the_swagger() {
    let Some(spec) = spec() else { return };
    let mut checked = 0;
    let mut problems = Vec::new();
    for source in sources() {
        for distribution in distributions() {
            for variant in variants() {
                let mut plan = base_plan(variant.os, source.clone(), distribution.clone());
                (variant.apply)(&mut plan);
                let artifact = ArtifactRef {
                    download_url: SAS_URL,
                    sha256_hex: &"ab".repeat(32),
                    size: variant.size,
                    folder: variant.folder,
                };
                let template = build_template(&plan, Some(&artifact), &pipeline());
                let body = serde_json::to_value(&template).unwrap();
                if let Err(issues) = spec.validate_request_body("PUT", TEMPLATE_PATH, &body) {
                    problems.push(format!(
                        "{source:?} / {distribution:?} / {}: {issues:#?}",
                        variant.name
                    ));
                }
                // What the log shows is JSON without the SAS.
                let shown = image_template::to_display_json(&template);
                assert!(!shown.contains("VGhpc0lzU2VjcmV0"), "{shown}");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
                    serde_json::to_value(image_template::redacted(&template)).unwrap()
                );
                // The redacted form is the same shape.
                let shown = serde_json::to_value(image_template::redacted(&template)).unwrap();
                assert!(
                    spec.validate_request_body("PUT", TEMPLATE_PATH, &shown)
                        .is_ok()
                );
                checked += 1;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert_eq!(checked, 3 * 6 * 8);

    // The validator is live: a wrong field is caught.
    let plan = base_plan(Os::Linux, sources().remove(0), Distribution::Vhd);
    let artifact = ArtifactRef {
        download_url: SAS_URL,
        sha256_hex: &"ab".repeat(32),
        size: 1,
        folder: "webapp",
    };
    let mut body =
        serde_json::to_value(build_template(&plan, Some(&artifact), &pipeline())).unwrap();
    body["properties"]["distribute"][0]["runOutputName"] = "not valid!".into();
    body["properties"]["customize"][0]["replicaCount"] = 1.into();
    let issues = spec
        .validate_request_body("PUT", TEMPLATE_PATH, &body)
        .unwrap_err();
    assert_eq!(issues.len(), 2, "{issues:#?}");
}

// ---------------------------------------------------------------------------------------------
// Running the Linux steps.

/// Serves `body` for every GET on 127.0.0.1 (after answering the first `failures` with 503) and
/// records the request lines.
struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(body: Vec<u8>) -> Server {
    serve_flaky(body, 0)
}

fn serve_flaky(body: Vec<u8>, failures: usize) -> Server {
    // A quote and a space in the path, a SAS-like query: quoting must hold.
    serve_at(body, failures, "/imagebuilder-vststask/it's%20here/a.zip")
}

/// [`serve_flaky`], the URL's path being `path` (as given: characters curl would glob stay raw).
fn serve_at(body: Vec<u8>, failures: usize, path: &str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let count = {
                let mut seen = seen.lock().unwrap();
                seen.push(head.lines().next().unwrap_or("").to_owned());
                seen.len()
            };
            if count <= failures {
                let _ = write!(
                    stream,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}{path}?sv=2022-11-02&sp=r&sig=abc%2Bdef%3D"),
        requests,
    }
}

/// The build path the tests archive: nested folders, an empty one, a read-only one, executable
/// and read-only files, awkward names.
fn make_tree(root: &Path) {
    let file = |rel: &str, data: &[u8], mode: u32| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    file("run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    file("readonly.txt", b"do not touch\n", 0o444);
    file("sub dir/it's $x.txt", b"quoted\n", 0o640);
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    file("sub dir/deeper/ünï `b`.bin", &noise, 0o600);
    file("locked/inside.txt", b"in a read-only folder\n", 0o644);
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o555)).unwrap();
}

/// Every entry under `root`: relative path → (mode bits, content for files).
fn snapshot(root: &Path) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Option<Vec<u8>>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.insert(rel, (mode, None));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode, Some(fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

struct Fixture {
    _temp: tempfile::TempDir,
    /// The build path's name, and so the folder's on the VM.
    folder: &'static str,
    source: PathBuf,
    /// The VM's `/tmp`.
    vm_root: PathBuf,
    zip: Vec<u8>,
    sha256_hex: String,
    bin: PathBuf,
}

fn fixture() -> Fixture {
    fixture_named(NASTY_FOLDER)
}

fn fixture_named(folder: &'static str) -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("agent").join("webapp");
    make_tree(&source);
    let (zip, summary) = aib_task::archive::write_archive(&source, Vec::new()).unwrap();
    assert_eq!(summary.files, 5);
    let sha256_hex = hex(&sha2::Sha256::digest(&zip));
    let vm_root = temp.path().join("vm tmp");
    fs::create_dir_all(&vm_root).unwrap();
    let bin = temp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    Fixture {
        _temp: temp,
        folder,
        source,
        vm_root,
        zip,
        sha256_hex,
        bin,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fixture {
    fn template(&self, url: &str, os: Os, force_download: bool, cleanup: bool) -> ImageTemplate {
        let mut plan = base_plan(os, sources().remove(0), Distribution::Vhd);
        plan.customization.inline_script = vec!["echo user step".into()];
        plan.customization.cleanup_artifacts = cleanup;
        let options = TemplateOptions {
            linux_root: self.vm_root.display().to_string(),
            file_customizer_max_bytes: if force_download { 0 } else { u64::MAX },
            ..TemplateOptions::default()
        };
        let artifact = ArtifactRef {
            download_url: url,
            sha256_hex: &self.sha256_hex,
            size: self.zip.len() as u64,
            folder: self.folder,
        };
        build_template_with(&plan, Some(&artifact), &pipeline(), &options)
    }

    /// Runs the step `name` as Packer does (its lines as one script file), with `shell -e`, on
    /// `path` when given.
    fn run_step(
        &self,
        shell: &str,
        steps: &[(String, String)],
        name: &str,
        path: Option<&str>,
    ) -> Output {
        let script = &steps.iter().find(|(n, _)| n == name).unwrap().1;
        let file = self.bin.join("step.sh");
        fs::write(&file, script).unwrap();
        let shell = which(shell).unwrap_or_else(|| panic!("{shell} is not installed"));
        let mut command = Command::new(shell);
        command.arg("-e").arg(&file);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command.output().unwrap()
    }

    fn vm_zip(&self) -> PathBuf {
        self.vm_root.join(format!("{}.zip", self.folder))
    }

    fn vm_dir(&self) -> PathBuf {
        self.vm_root.join(self.folder)
    }

    /// A PATH holding only `tools` (found on the current PATH).
    fn path_with(&self, name: &str, tools: &[&str]) -> String {
        let dir = self.bin.join(name);
        fs::create_dir_all(&dir).unwrap();
        for tool in tools {
            let target = if *tool == "python3" {
                let out = Command::new("python3")
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .expect("python3 runs");
                PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            } else {
                which(tool).unwrap_or_else(|| panic!("{tool} is not installed"))
            };
            symlink(target, dir.join(tool)).unwrap();
        }
        dir.display().to_string()
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn shell_steps(template: &ImageTemplate) -> Vec<(String, String)> {
    template
        .properties
        .customize
        .iter()
        .filter_map(|c| match c {
            Customizer::Shell { name, inline, .. } => Some((name.clone(), inline.join("\n"))),
            _ => None,
        })
        .collect()
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks that a step failed and said `message` on stderr.
fn assert_failed_saying(output: &Output, message: &str) {
    assert!(!output.status.success(), "the step succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(message), "{stderr}");
}

/// Downloads with the tools on `path` and extracts; the tree must come out identical.
fn download_and_extract(shell: &str, tools: Option<&[&str]>, label: &str) {
    let f = fixture();
    let server = serve(f.zip.clone());
    download_extract_and_remove(
        &f,
        &server,
        "GET /imagebuilder-vststask/it%27s%20here/a.zip?sv=",
        shell,
        tools,
        label,
    );
}

/// Runs the download, extract and removal steps of `f`'s template against `server` (which has
/// seen no request yet); the server must see one request starting with `request`, and the tree
/// must come out identical.
fn download_extract_and_remove(
    f: &Fixture,
    server: &Server,
    request: &str,
    shell: &str,
    tools: Option<&[&str]>,
    label: &str,
) {
    let template = f.template(&server.url, Os::Linux, true, true);
    let steps = shell_steps(&template);
    assert_eq!(
        steps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            step::DOWNLOAD,
            step::EXTRACT,
            step::INLINE_SCRIPT,
            step::REMOVE_ARTIFACTS
        ]
    );
    let path = tools.map(|t| f.path_with(label, t));
    let out = f.run_step(shell, &steps, step::DOWNLOAD, path.as_deref());
    assert_ok(&out, &format!("{label}: download"));
    assert_eq!(fs::read(f.vm_zip()).unwrap(), f.zip, "{label}");
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{label}: {requests:?}");
    assert!(requests[0].starts_with(request), "{label}: {requests:?}");

    let out = f.run_step(shell, &steps, step::EXTRACT, path.as_deref());
    assert_ok(&out, &format!("{label}: extract"));
    assert_eq!(snapshot(&f.vm_dir()), snapshot(&f.source), "{label}");
    let left: Vec<_> = fs::read_dir(&f.vm_root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("aib-task-"))
        .collect();
    assert!(left.is_empty(), "{label}: left behind: {left:?}");

    let out = f.run_step(shell, &steps, step::REMOVE_ARTIFACTS, path.as_deref());
    assert_ok(&out, &format!("{label}: cleanup"));
    assert!(!f.vm_dir().exists() && !f.vm_zip().exists(), "{label}");
    assert!(
        f.vm_root.exists(),
        "{label}: only the artifacts are removed"
    );
}

#[test]
fn curl_sha256sum_and_unzip_under_dash_and_bash() {
    download_and_extract("dash", None, "dash, full PATH");
    download_and_extract("bash", None, "bash, full PATH");
}

#[test]
fn wget_when_there_is_no_curl() {
    download_and_extract(
        "dash",
        Some(&[
            "rm",
            "mkdir",
            "cut",
            "sleep",
            "ln",
            "wget",
            "sha256sum",
            "unzip",
        ]),
        "wget",
    );
}

#[test]
fn python3_alone_downloads_checks_and_extracts_with_modes() {
    let tools: &[&str] = &["rm", "mkdir", "cut", "sleep", "python3"];
    download_and_extract("dash", Some(tools), "python3 only, dash");
    download_and_extract("bash", Some(tools), "python3 only, bash");
}

/// Folder names with characters curl reads as URL globs (`[ ] { }`) and Info-ZIP `unzip` as
/// wildcards in the archive's own name (`[ ] * ?`), each with the name of another archive in
/// the same folder that the wildcard would match (issue #10).
const GLOB_FOLDERS: &[(&str, Option<&str>)] = &[
    ("web[1]{x}", Some("web1{x}.zip")),
    ("a[b", None),
    ("{}", None),
    ("]x[", None),
    ("v*", Some("v1.zip")),
    ("a?b", Some("a-b.zip")),
];

/// The blob's path as staging makes it (`<folder>/<run>-<attempt>/<folder>_<ms>.zip`), with
/// only what a URL path cannot hold raw encoded: `[ ] { }` stay as they are.
fn blob_path(folder: &str) -> String {
    let segment = folder.replace('?', "%3F");
    format!("/imagebuilder-vststask/{segment}/42-1/{segment}_1.zip")
}

#[test]
fn glob_characters_in_folder_names_reach_the_vm_intact() {
    for (folder, decoy) in GLOB_FOLDERS {
        let f = fixture_named(folder);
        if let Some(decoy) = decoy {
            let other = f.vm_root.join("decoy source");
            fs::create_dir_all(&other).unwrap();
            fs::write(other.join("decoy.txt"), b"the wrong archive\n").unwrap();
            let (zip, _) = aib_task::archive::write_archive(&other, Vec::new()).unwrap();
            fs::remove_dir_all(&other).unwrap();
            fs::write(f.vm_root.join(decoy), zip).unwrap();
        }
        let path = blob_path(folder);
        let server = serve_at(f.zip.clone(), 0, &path);
        // What the server sees: the glob characters percent-encoded, nothing else changed.
        let request = format!(
            "GET {}?sv=",
            path.replace('[', "%5B")
                .replace(']', "%5D")
                .replace('{', "%7B")
                .replace('}', "%7D")
        );
        let wget: &[&str] = &[
            "rm",
            "mkdir",
            "cut",
            "sleep",
            "ln",
            "wget",
            "sha256sum",
            "unzip",
        ];
        let python: &[&str] = &["rm", "mkdir", "cut", "sleep", "python3"];
        for (shell, tools, label) in [
            ("dash", None, "curl and unzip, dash"),
            ("bash", None, "curl and unzip, bash"),
            ("dash", Some(wget), "wget"),
            ("dash", Some(python), "python3 only"),
        ] {
            server.requests.lock().unwrap().clear();
            let label = format!("{folder} - {label}");
            download_extract_and_remove(&f, &server, &request, shell, tools, &label);
            if let Some(decoy) = decoy {
                assert!(f.vm_root.join(decoy).exists(), "{label}: the other archive");
            }
        }
    }
}

#[test]
fn a_small_archive_from_the_file_customizer_is_extracted_by_either_tool() {
    for (label, tools) in [
        ("unzip", None),
        ("python3", Some(&["mkdir", "python3"][..])),
    ] {
        // The File customizer is only for names that need no quoting.
        let f = fixture_named("_Drop-1.2");
        let template = f.template(SAS_URL, Os::Linux, false, false);
        let Customizer::File {
            source_uri,
            destination,
            sha256_checksum,
            ..
        } = &template.properties.customize[0]
        else {
            panic!("{:?}", template.properties.customize[0]);
        };
        assert_eq!(source_uri, SAS_URL);
        assert_eq!(Path::new(destination), f.vm_zip());
        assert_eq!(sha256_checksum.as_deref(), Some(f.sha256_hex.as_str()));
        // What Image Builder's File customizer does.
        fs::write(destination, &f.zip).unwrap();
        let steps = shell_steps(&template);
        let path = tools.map(|t| f.path_with(label, t));
        let out = f.run_step("dash", &steps, step::EXTRACT, path.as_deref());
        assert_ok(&out, label);
        assert_eq!(snapshot(&f.vm_dir()), snapshot(&f.source), "{label}");
        assert!(f.vm_zip().exists(), "the archive stays without cleanup");
    }
}

#[test]
fn a_tampered_archive_is_refused_and_removed() {
    let f = fixture();
    let mut tampered = f.zip.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x55;
    let server = serve(tampered);
    let template = f.template(&server.url, Os::Linux, true, false);
    let steps = shell_steps(&template);
    for (label, tools) in [
        ("sha256sum", None),
        (
            "python3",
            Some(&["rm", "mkdir", "cut", "sleep", "curl", "python3"][..]),
        ),
    ] {
        let path = tools.map(|t| f.path_with(label, t));
        let out = f.run_step("dash", &steps, step::DOWNLOAD, path.as_deref());
        assert!(!out.status.success(), "{label}: a damaged archive passed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("damaged") && stderr.contains(&f.sha256_hex),
            "{label}: {stderr}"
        );
        assert!(!f.vm_zip().exists(), "{label}: the damaged download stays");
    }
}

#[test]
fn no_download_tool_fails_at_once_with_a_clear_message() {
    let f = fixture();
    let template = f.template("http://127.0.0.1:9/x.zip?sig=a", Os::Linux, true, false);
    let steps = shell_steps(&template);
    let path = f.path_with("nothing", &["rm", "cut"]);
    let out = f.run_step("dash", &steps, step::DOWNLOAD, Some(&path));
    assert_failed_saying(&out, "none of curl, wget or python3 is installed");
    let path = f.path_with("no-extractor", &["mkdir"]);
    fs::write(f.vm_zip(), &f.zip).unwrap();
    let out = f.run_step("dash", &steps, step::EXTRACT, Some(&path));
    assert_failed_saying(&out, "neither unzip nor python3 is installed");
}

// ---------------------------------------------------------------------------------------------
// Parsing the Windows steps.

/// Folder names for the PowerShell steps: plain, hostile to quoting (quotes, typographic quotes,
/// `$`, backticks, subexpressions, comment and statement characters, Unicode beyond the BMP),
/// and the wildcard characters `Expand-Archive` reads.
const WINDOWS_FOLDERS: &[&str] = &[
    "webapp",
    NASTY_FOLDER,
    "it\u{2019}s \u{2018}q\u{201B} \u{201A} \u{1F600} \u{65E5}\u{672C}",
    "$(Remove-Item C) @(x) ${y}",
    "a;b|c&d #e <f> {g}",
    "-rf",
    "`n``",
    "''",
    "web[1]{x}",
    "a[b",
    "v*",
    "a?b",
];

/// The syntax errors the tree-sitter PowerShell grammar finds in `script`, each ERROR or
/// MISSING node with its position and the line it is on; and the PowerShell 7 pipeline chains
/// (`&&`, `||`) the grammar accepts but Windows PowerShell 5.1, which runs the customizers,
/// refuses.
fn powershell_syntax_errors(script: &str) -> Vec<String> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("the PowerShell grammar loads");
    let tree = parser
        .parse(script, None)
        .expect("the parser returns a tree");
    let mut errors = Vec::new();
    let mut cursor = tree.walk();
    'walk: loop {
        let node = cursor.node();
        let problem = if node.is_missing() {
            Some(format!("MISSING {}", node.kind()))
        } else if node.is_error() {
            Some("ERROR".to_owned())
        } else if node.kind() == "pipeline_chain_tail" {
            Some("PowerShell 7 only".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            let at = node.start_position();
            errors.push(format!(
                "{problem} at line {}, column {}: {:?} in line {:?}",
                at.row + 1,
                at.column + 1,
                &script[node.byte_range()],
                script.lines().nth(at.row).unwrap_or("")
            ));
        } else if cursor.goto_first_child() {
            continue;
        }
        // The next sibling, else the next sibling of the nearest ancestor that has one.
        while !cursor.goto_next_sibling() {
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    errors
}

/// Every PowerShell customizer of `template`: (name, script as Packer writes it).
fn powershell_steps(template: &ImageTemplate) -> Vec<(String, String)> {
    template
        .properties
        .customize
        .iter()
        .filter_map(|c| match c {
            Customizer::PowerShell { name, inline, .. } => Some((name.clone(), inline.join("\n"))),
            _ => None,
        })
        .collect()
}

#[test]
fn every_windows_step_parses_as_powershell() {
    let mut problems = Vec::new();
    let mut scripts = 0;
    for variant in variants().into_iter().filter(|v| v.os == Os::Windows) {
        for folder in WINDOWS_FOLDERS {
            for cleanup in [false, true] {
                for update in [false, true] {
                    for (elevated, system) in [(false, false), (true, false), (true, true)] {
                        let mut plan =
                            base_plan(Os::Windows, sources().remove(0), Distribution::Vhd);
                        (variant.apply)(&mut plan);
                        plan.customization.cleanup_artifacts = cleanup;
                        plan.customization.windows_update = update;
                        plan.customization.run_elevated = elevated;
                        plan.customization.run_as_system = system;
                        let artifact = ArtifactRef {
                            download_url: SAS_URL,
                            sha256_hex: &"ab".repeat(32),
                            size: variant.size,
                            folder,
                        };
                        let template = build_template(&plan, Some(&artifact), &pipeline());
                        for (name, script) in powershell_steps(&template) {
                            scripts += 1;
                            let errors = powershell_syntax_errors(&script);
                            if !errors.is_empty() {
                                problems.push(format!(
                                    "{} / {folder:?} / cleanup {cleanup} / update {update} / elevated {elevated} / system {system} / {name}:\n  {}\n--- script ---\n{script}",
                                    variant.name,
                                    errors.join("\n  ")
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {scripts} PowerShell steps do not parse:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
    assert!(scripts > 1000, "{scripts}");
}

#[test]
fn the_powershell_check_catches_broken_scripts() {
    for broken in [
        "Write-Host 'unclosed",
        "Write-Host \"unclosed",
        "$zip = 'C:\\buildArtifacts\\it's.zip'",
        "if ($x) { Write-Host hi",
        "try { x } catch {",
        "Write-Host ($x",
        "}",
        "$a = ('' + 'x' + [char]0x00FC",
        "Write-Host \"$($_.Exception.Message\"",
        "Test-Path $zip && Remove-Item $zip",
    ] {
        assert!(
            !powershell_syntax_errors(broken).is_empty(),
            "not caught: {broken}"
        );
    }
    // A generated step with its last brace, or one quote, taken away.
    let plan = base_plan(Os::Windows, sources().remove(0), Distribution::Vhd);
    let artifact = ArtifactRef {
        download_url: SAS_URL,
        sha256_hex: &"ab".repeat(32),
        size: 10,
        folder: "webapp",
    };
    let template = build_template(&plan, Some(&artifact), &pipeline());
    let (_, download) = &powershell_steps(&template)[0];
    assert_eq!(powershell_syntax_errors(download), Vec::<String>::new());
    let brace = download.rfind('}').unwrap();
    let unclosed = format!("{}{}", &download[..brace], &download[brace + 1..]);
    let errors = powershell_syntax_errors(&unclosed);
    assert!(
        errors.iter().any(|e| e.starts_with("MISSING }")),
        "{errors:?}"
    );
    let unquoted = download.replacen(r"$zip = 'C:", r"$zip = C:", 1);
    assert_ne!(&unquoted, download);
    let errors = powershell_syntax_errors(&unquoted);
    assert!(errors.iter().any(|e| e.contains("line 6")), "{errors:?}");
}

// ---------------------------------------------------------------------------------------------
// Reading answers.

fn example(name: &str) -> Option<serde_json::Value> {
    let spec = SwaggerSpec::default_image_builder_path(image_template::API_VERSION)?;
    let path = spec.parent()?.join("examples").join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) => {
            aib_emulator::swagger::missing_spec(&path.display().to_string());
            None
        }
    }
}

#[test]
fn the_specs_examples_read_into_the_models() {
    let Some(get) = example("GetImageTemplate.json") else {
        aib_emulator::swagger::missing_spec("the 2024-02-01 examples");
        return;
    };
    let template: ImageTemplate =
        serde_json::from_value(get["responses"]["200"]["body"].clone()).unwrap();
    assert_eq!(template.name.as_deref(), Some("myImageTemplate"));
    assert!(matches!(
        template.properties.source,
        Source::ManagedImage { .. }
    ));
    assert!(matches!(
        &template.properties.customize[0],
        Customizer::Shell {
            script_uri: Some(_),
            ..
        }
    ));
    assert_eq!(
        template.properties.distribute[0].run_output_name(),
        "image_it_pir_1"
    );
    assert_eq!(
        template
            .properties
            .vm_profile
            .as_ref()
            .unwrap()
            .os_disk_size_gb,
        Some(64)
    );
    let identity = template
        .identity
        .user_assigned_identities
        .values()
        .next()
        .unwrap();
    assert!(identity.client_id.is_some());

    let output = example("GetRunOutput.json").unwrap();
    let output: RunOutput =
        serde_json::from_value(output["responses"]["200"]["body"].clone()).unwrap();
    assert_eq!(output.name, "myManagedImageOutput");
    assert!(
        output
            .properties
            .artifact_id
            .unwrap()
            .ends_with("/images/output_managed_image")
    );
    assert_eq!(
        output.properties.provisioning_state,
        Some(ProvisioningState::Succeeded)
    );

    // The create examples read too (their request bodies).
    for name in [
        "CreateImageTemplateLinux.json",
        "CreateImageTemplateWindows.json",
    ] {
        let Some(create) = example(name) else {
            continue;
        };
        let body = create["parameters"]["parameters"].clone();
        let parsed: Result<ImageTemplate, _> = serde_json::from_value(body);
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
    }
}

#[tokio::test]
async fn the_emulators_answer_reads_back() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let signed = common::sign_in(&emulator);
    let mut plan = base_plan(
        Os::Linux,
        plan::Source::Marketplace {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "server".into(),
            version: "latest".into(),
        },
        Distribution::Vhd,
    );
    plan.location = defaults::LOCATION.into();
    plan.identity = parse(
        Kind::UserAssignedIdentity,
        defaults::MANAGED_IDENTITY_RESOURCE_ID,
    )
    .unwrap();
    plan.customization.inline_script = vec!["echo hello".into()];
    let artifact = ArtifactRef {
        download_url: SAS_URL,
        sha256_hex: &"ab".repeat(32),
        size: 1000,
        folder: "webapp",
    };
    let template = build_template(&plan, Some(&artifact), &pipeline());
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/t_roundtrip",
        defaults::SUBSCRIPTION_ID,
        defaults::RESOURCE_GROUP
    );
    let url = signed.arm.url(&path, image_template::API_VERSION).unwrap();
    let body = serde_json::to_value(&template).unwrap();
    let started = signed
        .arm
        .send("put template", reqwest::Method::PUT, url, Some(&body))
        .await
        .unwrap();
    let status = signed
        .arm
        .wait("put template", &started, None)
        .await
        .unwrap();
    assert!(status.succeeded(), "{status:?}");
    let read: ImageTemplate = signed
        .arm
        .get("get template", &path, image_template::API_VERSION)
        .await
        .unwrap();
    assert_eq!(read.name.as_deref(), Some("t_roundtrip"));
    assert_eq!(
        read.properties.provisioning_state,
        Some(ProvisioningState::Succeeded)
    );
    assert_eq!(read.properties.customize, template.properties.customize);
    assert_eq!(read.properties.distribute, template.properties.distribute);
    assert_eq!(read.tags, template.tags);
    assert_eq!(read.location, template.location);
}

#[test]
fn the_emulator_finds_the_download_and_its_checksum_in_each_layout() {
    let sha = "cd".repeat(32);
    let endpoints = ["https://acct.blob.core.windows.net/".to_owned()];
    for (os, size, folder, kind) in [
        (Os::Linux, 10, "webapp", "File"),
        (Os::Linux, 10, NASTY_FOLDER, "Shell"),
        (
            Os::Linux,
            image_template::FILE_CUSTOMIZER_MAX_BYTES + 1,
            "webapp",
            "Shell",
        ),
        (Os::Windows, 10, NASTY_FOLDER, "PowerShell"),
    ] {
        let mut plan = base_plan(os, sources().remove(0), Distribution::Vhd);
        plan.customization.inline_script = vec!["echo done".into()];
        let artifact = ArtifactRef {
            download_url: SAS_URL,
            sha256_hex: &sha,
            size,
            folder,
        };
        let template = build_template(&plan, Some(&artifact), &pipeline());
        let body = serde_json::to_value(&template).unwrap();
        let customize = body["properties"]["customize"].as_array().unwrap();
        assert_eq!(customize[0]["type"], kind);
        let fetches = aib_emulator::artifacts::plan(customize, &endpoints);
        assert_eq!(fetches.len(), 1, "{kind}: {fetches:?}");
        assert_eq!(fetches[0].url, SAS_URL, "{kind}");
        assert_eq!(
            fetches[0].expected_sha256,
            std::slice::from_ref(&sha),
            "{kind}"
        );
        assert_eq!(fetches[0].customizer, step::DOWNLOAD);
    }
}

/// A `sleep` that returns at once and notes how long it was asked to wait.
fn fake_sleep(dir: &Path) -> PathBuf {
    let log = dir.join("sleeps.log");
    let script = dir.join("sleep");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn failed_downloads_are_retried_with_growing_waits_then_given_up() {
    let tools: &[&str] = &["rm", "mkdir", "cut", "curl", "sha256sum"];
    for (failures, succeeds) in [(2, true), (5, false)] {
        let f = fixture();
        let server = serve_flaky(f.zip.clone(), failures);
        let template = f.template(&server.url, Os::Linux, true, false);
        let steps = shell_steps(&template);
        let path = f.path_with("retry", tools);
        let sleeps = fake_sleep(Path::new(&path));
        let out = f.run_step("dash", &steps, step::DOWNLOAD, Some(&path));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let waits = fs::read_to_string(&sleeps).unwrap_or_default();
        if succeeds {
            assert_ok(&out, "after two failures");
            assert_eq!(fs::read(f.vm_zip()).unwrap(), f.zip);
            assert_eq!(waits, "10\n20\n");
            assert!(stderr.contains("download attempt 2 failed"), "{stderr}");
        } else {
            assert_failed_saying(&out, "failed 5 times; giving up");
            assert_eq!(waits, "10\n20\n30\n40\n");
            assert!(!f.vm_zip().exists());
        }
        assert_eq!(server.requests.lock().unwrap().len(), failures.min(4) + 1);
    }
}

#[test]
fn capabilities_map_to_their_template_fields() {
    let artifact = ArtifactRef {
        download_url: SAS_URL,
        sha256_hex: &"ab".repeat(32),
        size: 4096,
        folder: "webapp",
    };
    let every = variants()
        .into_iter()
        .find(|v| v.name.starts_with("linux, every capability"))
        .unwrap();
    let mut plan = base_plan(Os::Linux, sources().remove(0), distributions().remove(1));
    (every.apply)(&mut plan);
    let body = serde_json::to_value(build_template(&plan, Some(&artifact), &pipeline())).unwrap();
    let p = &body["properties"];
    let distributor = &p["distribute"][0];
    assert!(
        distributor["galleryImageId"]
            .as_str()
            .unwrap()
            .ends_with("/galleries/g/images/i/versions/1.4.0"),
        "{distributor}"
    );
    assert_eq!(
        distributor["targetRegions"],
        serde_json::json!([
            {"name": "westeurope", "replicaCount": 2, "storageAccountType": "Standard_ZRS"},
            {"name": "eastus2", "replicaCount": 1, "storageAccountType": "Standard_ZRS"}
        ])
    );
    assert!(distributor.get("versioning").is_none(), "{distributor}");
    assert_eq!(
        p["validate"],
        serde_json::json!({
            "continueDistributeOnFailure": true,
            "sourceValidationOnly": false,
            "inVMValidations": [{"type": "Shell", "name": step::VALIDATION, "inline": ["test -x /opt/webapp/run"]}]
        })
    );
    assert_eq!(
        p["errorHandling"],
        serde_json::json!({"onCustomizerError": "abort", "onValidationError": "abort"})
    );
    assert_eq!(
        p["optimize"],
        serde_json::json!({"vmBoot": {"state": "Enabled"}})
    );
    assert!(
        p["vmProfile"]["userAssignedIdentities"][0]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/build-vm")
    );
    let vnet = &p["vmProfile"]["vnetConfig"];
    assert!(
        vnet["subnetId"]
            .as_str()
            .unwrap()
            .ends_with("/subnets/build")
    );
    assert!(
        vnet["containerInstanceSubnetId"]
            .as_str()
            .unwrap()
            .ends_with("/subnets/aci")
    );
    assert!(vnet.get("proxyVmSize").is_none());
    assert_eq!(
        p["managedResourceTags"],
        serde_json::json!({"costCenter": "1234"})
    );
    // In-VM delivery: a small Linux archive is downloaded by a Shell step, not a File
    // customizer; the customizers file's steps follow the inline script.
    let steps = p["customize"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            step::DOWNLOAD,
            step::EXTRACT,
            step::INLINE_SCRIPT,
            "harden",
            "motd"
        ]
    );
    assert_eq!(steps[0]["type"], "Shell");
    assert_eq!(steps[3]["scriptUri"], "https://example.com/harden.sh");
    // The same plan with automatic delivery uses the File customizer again.
    plan.artifact_delivery = ArtifactDelivery::Auto;
    let t = build_template(&plan, Some(&artifact), &pipeline());
    assert!(matches!(t.properties.customize[0], Customizer::File { .. }));

    // Versioning schemes, and an empty region list until the gallery is read: the build's.
    for (distribution, versioning) in [
        (
            distributions().remove(3),
            serde_json::json!({"scheme": "Latest", "major": 2}),
        ),
        (
            distributions().remove(4),
            serde_json::json!({"scheme": "Source"}),
        ),
    ] {
        let plan = base_plan(Os::Linux, sources().remove(0), distribution);
        let body =
            serde_json::to_value(build_template(&plan, Some(&artifact), &pipeline())).unwrap();
        let d = &body["properties"]["distribute"][0];
        assert_eq!(d["versioning"], versioning);
        assert!(d["galleryImageId"].as_str().unwrap().ends_with("/images/i"));
    }
    let plan = base_plan(Os::Linux, sources().remove(0), distributions().remove(3));
    let t = build_template(&plan, Some(&artifact), &pipeline());
    let image_template::Distributor::SharedImage { target_regions, .. } =
        &t.properties.distribute[0]
    else {
        panic!()
    };
    assert_eq!(target_regions[0].name, "westeurope");

    // Windows validation runs in PowerShell; a proxy VM size goes to vnetConfig.
    let windows = variants()
        .into_iter()
        .find(|v| v.name.starts_with("windows, validation"))
        .unwrap();
    let mut plan = base_plan(Os::Windows, sources().remove(0), Distribution::Vhd);
    (windows.apply)(&mut plan);
    let body = serde_json::to_value(build_template(&plan, Some(&artifact), &pipeline())).unwrap();
    assert_eq!(
        body["properties"]["validate"]["inVMValidations"][0]["type"],
        "PowerShell"
    );
    assert_eq!(
        body["properties"]["vmProfile"]["vnetConfig"]["proxyVmSize"],
        "Standard_A2_v2"
    );
    assert!(body["properties"].get("errorHandling").is_none());

    // Source validation only: nothing is customized, with or without an artifact.
    let source_only = variants()
        .into_iter()
        .find(|v| v.name == "linux, source validation only")
        .unwrap();
    let mut plan = base_plan(Os::Linux, sources().remove(0), Distribution::Vhd);
    (source_only.apply)(&mut plan);
    for artifact in [None, Some(&artifact)] {
        let t = build_template(&plan, artifact, &pipeline());
        assert!(t.properties.customize.is_empty());
        assert!(
            t.properties
                .validate
                .as_ref()
                .unwrap()
                .source_validation_only
        );
    }
}
