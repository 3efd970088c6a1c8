//! The build log Image Builder leaves in the staging account: renders a realistic packer
//! `customization.log` (plugin start-up, resource creation, each customizer with the user's
//! inline lines, the downloads, then success or the failure) and writes it into the staging
//! account's `packerlogs` container with a hand-signed shared-key PUT.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;
use time::macros::format_description;

use crate::{
    artifacts::Download, config::StorageAccountConfig, image_templates::RunSubState, state::now,
};

/// How the build ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    Failed {
        phase: RunSubState,
        detail: Option<String>,
    },
    Canceled,
}

/// What the log is about.
pub struct LogInput<'a> {
    pub template_id: &'a str,
    pub request: &'a Value,
    pub staging_group: &'a str,
    pub exact_version: Option<&'a str>,
    pub downloads: &'a [Download],
    pub outcome: Outcome,
}

struct Log {
    text: String,
    clock: time::OffsetDateTime,
}

impl Log {
    fn stamp(&mut self) -> String {
        self.clock += time::Duration::milliseconds(733);
        self.clock
            .format(format_description!(
                "[year]/[month]/[day] [hour]:[minute]:[second]"
            ))
            .unwrap_or_default()
    }
    fn info(&mut self, text: &str) {
        let t = self.stamp();
        let _ = writeln!(self.text, "{t} [INFO] {text}");
    }
    fn plugin(&mut self, text: &str) {
        let t = self.stamp();
        let _ = writeln!(
            self.text,
            "{t} packer-plugin-azure_v2.1.7_x5.0_linux_amd64 plugin: {t} {text}"
        );
    }
    fn ui(&mut self, text: &str) {
        let _ = writeln!(self.text, "PACKER OUT {text}");
    }
    fn err(&mut self, text: &str) {
        let _ = writeln!(self.text, "PACKER ERR {text}");
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The lines of a customizer's `inline` script.
fn inline_lines(customizer: &Value) -> impl Iterator<Item = &str> {
    customizer
        .get("inline")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Renders the log (a few hundred lines).
pub fn render(input: &LogInput<'_>) -> String {
    let mut log = Log {
        text: String::new(),
        clock: now() - time::Duration::minutes(6),
    };
    let props = input
        .request
        .get("properties")
        .cloned()
        .unwrap_or(Value::Null);
    let source = props.get("source").cloned().unwrap_or(Value::Null);
    let vm_size = props
        .pointer("/vmProfile/vmSize")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("Standard_D1_v2");
    let location = str_of(input.request, "location");
    let windows = props
        .get("customize")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|x| {
                matches!(
                    str_of(x, "type"),
                    "PowerShell" | "WindowsRestart" | "WindowsUpdate"
                )
            })
        });
    let temp_rg = format!(
        "pkr-Resource-Group-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );

    log.info("Packer version: 1.10.0 [go1.21.5 linux amd64]");
    log.info("PACKER_CONFIG env var not set; checking the default config file path");
    log.info("PACKER_CONFIG env var set; attempting to open config file: /root/.packerconfig");
    log.info("Setting cache directory: /root/.cache/packer");
    for plugin in [
        "azure-arm",
        "azure-chroot",
        "azure-dtlartifact",
        "azure-dtl",
        "file",
        "shell",
        "powershell",
        "windows-restart",
        "windows-update",
    ] {
        log.info(&format!(
            "found external [-packer-default-plugin-name- {plugin}] plugins"
        ));
    }
    log.info("Starting external plugin /root/.config/packer/plugins/github.com/hashicorp/azure/packer-plugin-azure_v2.1.7_x5.0_linux_amd64 start builder arm");
    log.info("Waiting for RPC address for: /root/.config/packer/plugins/github.com/hashicorp/azure/packer-plugin-azure_v2.1.7_x5.0_linux_amd64");
    log.plugin("Plugin address: unix /tmp/packer-plugin3911450126");
    log.plugin("Waiting for connection...");
    log.plugin("Serving a plugin connection...");
    log.info(&format!("Build template: {}", input.template_id));
    for (k, v) in [
        ("build_resource_group_name", ""),
        ("capture_container_name", ""),
        ("capture_name_prefix", ""),
        ("client_id", "(managed identity)"),
        ("cloud_environment_name", "Public"),
        ("communicator", if windows { "winrm" } else { "ssh" }),
        ("image_offer", str_of(&source, "offer")),
        ("image_publisher", str_of(&source, "publisher")),
        ("image_sku", str_of(&source, "sku")),
        ("image_version", str_of(&source, "version")),
        ("location", location),
        ("os_type", if windows { "Windows" } else { "Linux" }),
        ("polling_duration_timeout", "0s"),
        ("private_virtual_network_with_public_ip", "false"),
        ("shared_image_gallery_timeout", "0s"),
        ("ssh_pty", "true"),
        ("temp_compute_name", "pkrvm0emulated"),
        ("temp_resource_group_name", &temp_rg),
        ("user_assigned_managed_identities", "[1 identity]"),
        ("vm_size", vm_size),
        ("winrm_timeout", "30m0s"),
    ] {
        log.plugin(&format!("[DEBUG] template variable {k} = {v:?}"));
    }
    for step in [
        "StepResolvePlatformImageVersion",
        "StepCreateResourceGroup",
        "StepValidateTemplate",
        "StepDeployTemplate",
        "StepGetIPAddress",
        "StepConnect",
        "StepProvision",
        "StepCleanupTempKeys",
        "StepPowerOffCompute",
        "StepSnapshotOSDisk",
        "StepGeneralizeOS",
        "StepCaptureImage",
        "StepPublishToSharedImageGallery",
        "StepDeleteAdditionalDisks",
    ] {
        log.plugin(&format!("[DEBUG] registered build step {step}"));
    }
    log.ui("==> azure-arm: Running builder ...");
    log.ui("    azure-arm: Creating Azure Resource Manager (ARM) client ...");
    log.plugin("[DEBUG] getting tokens using Managed Identity for Azure");
    log.ui("==> azure-arm: Getting tokens using Managed Identity for Azure");
    match str_of(&source, "type") {
        "PlatformImage" => {
            let version = input.exact_version.unwrap_or(str_of(&source, "version"));
            log.ui(&format!(
                "==> azure-arm: Using marketplace image {}:{}:{}:{version}",
                str_of(&source, "publisher"),
                str_of(&source, "offer"),
                str_of(&source, "sku")
            ));
        }
        "ManagedImage" => log.ui(&format!(
            "==> azure-arm: Using managed image {}",
            str_of(&source, "imageId")
        )),
        other => log.ui(&format!(
            "==> azure-arm: Using {other} {}",
            str_of(&source, "imageVersionId")
        )),
    }
    log.ui(&format!(
        "==> azure-arm: Creating resource group in '{}' ...",
        input.staging_group
    ));
    log.ui(&format!(
        "==> azure-arm:  -> ResourceGroupName : '{temp_rg}'"
    ));
    log.ui(&format!(
        "==> azure-arm:  -> Location          : '{location}'"
    ));
    log.ui("==> azure-arm: Validating deployment template ...");
    for (k, v) in [
        ("StorageAccountName", "''"),
        ("DeploymentName", "'pkrdp0emulated'"),
        ("VMSize", vm_size),
    ] {
        log.ui(&format!("==> azure-arm:  -> {k:<20}: {v}"));
    }
    log.ui("==> azure-arm: Deploying deployment template ...");
    for i in 0..40 {
        let state = if i < 39 { "Running" } else { "Succeeded" };
        log.plugin(&format!(
            "[DEBUG] polling deployment pkrdp0emulated: provisioningState={state} (poll {i})"
        ));
    }
    log.ui("==> azure-arm: Getting the VM's IP address ...");
    log.ui("==> azure-arm:  -> IP Address        : '10.1.0.4'");
    if windows {
        log.ui("==> azure-arm: Waiting for WinRM to become available...");
        log.ui("    azure-arm: WinRM connected.");
        log.ui("==> azure-arm: Connected to WinRM!");
    } else {
        log.ui("==> azure-arm: Waiting for SSH to become available...");
        log.ui("==> azure-arm: Connected to SSH!");
    }
    for resource in [
        "Microsoft.Network/publicIPAddresses/pkrip0emulated",
        "Microsoft.Network/virtualNetworks/pkrvn0emulated",
        "Microsoft.Network/networkInterfaces/pkrni0emulated",
        "Microsoft.Compute/virtualMachines/pkrvm0emulated",
        "Microsoft.Compute/disks/pkros0emulated",
    ] {
        log.ui(&format!(
            "==> azure-arm:  -> Deployment resource : '{resource}' (Succeeded)"
        ));
    }
    for n in 0..30 {
        let line = match n % 5 {
            0 => "[DEBUG] communicator: opening new session",
            1 => "[DEBUG] communicator: starting remote command",
            2 => "[DEBUG] communicator: remote command exited with '0'",
            3 => "[DEBUG] communicator: upload complete",
            _ => "[INFO] RPC client: Communicator ended with: 0",
        };
        log.plugin(line);
    }
    for provisioner in [
        "shell",
        "file",
        "powershell",
        "windows-restart",
        "windows-update",
        "shell-local",
    ] {
        log.info(&format!(
            "Starting internal plugin packer-provisioner-{provisioner}"
        ));
        log.plugin(&format!(
            "[INFO] Plugin packer-provisioner-{provisioner} ready"
        ));
    }
    let building_failed = matches!(
        input.outcome,
        Outcome::Failed {
            phase: RunSubState::Queued | RunSubState::Building,
            ..
        }
    );
    if building_failed {
        return finish_failed(
            log,
            "Deployment failed: the build VM could not be provisioned (emulated failure)",
        );
    }

    let failing_customizer = matches!(
        &input.outcome,
        Outcome::Failed {
            phase: RunSubState::Customizing,
            ..
        }
    );
    let customizers = props
        .get("customize")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, c) in customizers.iter().enumerate() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}#{i}", str_of(c, "type")));
        let downloads: Vec<&Download> = input
            .downloads
            .iter()
            .filter(|d| d.customizer == name)
            .collect();
        match str_of(c, "type") {
            "File" => {
                log.ui(&format!(
                    "==> azure-arm: Uploading {} => {}",
                    downloads
                        .first()
                        .map(|d| d.url.as_str())
                        .unwrap_or("(source)"),
                    str_of(c, "destination")
                ));
                for d in &downloads {
                    log.ui(&format!(
                        "    azure-arm: {} {} bytes / {} bytes [100.00%]",
                        d.url.rsplit('/').next().unwrap_or(""),
                        d.size,
                        d.size
                    ));
                }
            }
            "Shell" => {
                log.ui(&format!(
                    "==> azure-arm: Provisioning with shell script: /tmp/packer-shell{}",
                    3_100_000_000u64 + i as u64 * 7919
                ));
                for line in inline_lines(c) {
                    log.ui(&format!("    azure-arm: + {line}"));
                }
            }
            "PowerShell" => {
                log.ui(&format!("==> azure-arm: Provisioning with powershell script: C:/Windows/Temp/script-{:08x}.ps1", 0x6f3a_0000u32 + i as u32));
                for line in inline_lines(c) {
                    log.ui(&format!("    azure-arm: PS> {line}"));
                }
            }
            "WindowsRestart" => {
                log.ui("==> azure-arm: Restarting Machine");
                log.ui("==> azure-arm: Waiting for machine to restart...");
                log.ui("    azure-arm: Restart complete");
                log.ui("==> azure-arm: Machine successfully restarted, moving on");
            }
            "WindowsUpdate" => {
                log.ui("==> azure-arm: Uploading the Windows update elevated script...");
                log.ui("==> azure-arm: Uploading the Windows update check for reboot required elevated script...");
                log.ui("==> azure-arm: Running Windows update...");
                log.ui("    azure-arm: Searching for Windows updates...");
                log.ui("    azure-arm: Found 0 updates (0 selected).");
            }
            other => log.ui(&format!("==> azure-arm: Running customizer {other}")),
        }
        for d in &downloads {
            match &d.error {
                Some(e) => {
                    log.err(&format!("==> azure-arm: {e}"));
                    return finish_failed(log, &format!("Customizer '{name}' failed: {e}"));
                }
                None => {
                    log.ui(&format!(
                        "    azure-arm: downloaded {} ({} bytes, sha256 {})",
                        d.url, d.size, d.sha256
                    ));
                    for entry in &d.entries {
                        log.ui(&format!("    azure-arm:   inflating: {entry}"));
                    }
                }
            }
        }
        let output: &[&str] = if windows {
            &[
                "Directory: C:\\buildArtifacts",
                "Mode                 LastWriteTime         Length Name",
                "----                 -------------         ------ ----",
                "d-----        11/27/2026   5:00 AM                buildArtifacts",
            ]
        } else {
            &[
                "Reading package lists...",
                "Building dependency tree...",
                "Reading state information...",
                "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.",
            ]
        };
        for n in 0..10 {
            for line in output {
                log.ui(&format!("    azure-arm: {line}"));
            }
            log.plugin(&format!("[DEBUG] {name}: remote command progress {n}/10"));
        }
        if failing_customizer && i + 1 == customizers.len() {
            let detail = match &input.outcome {
                Outcome::Failed {
                    detail: Some(d), ..
                } => d.clone(),
                _ => {
                    "Script exited with non-zero exit status: 1. Allowed exit codes are: [0]".into()
                }
            };
            log.err(&format!("==> azure-arm: {detail}"));
            return finish_failed(log, &detail);
        }
    }
    if failing_customizer {
        return finish_failed(
            log,
            "Script exited with non-zero exit status: 1. Allowed exit codes are: [0]",
        );
    }
    if matches!(input.outcome, Outcome::Canceled) {
        log.ui("==> azure-arm: Build was cancelled.");
        return finish_failed(log, "Build was cancelled.");
    }
    log.ui("==> azure-arm: Querying the machine's properties ...");
    log.ui("==> azure-arm: Powering off machine ...");
    log.ui("==> azure-arm: Generalizing machine ...");
    log.ui("==> azure-arm: Capturing image ...");
    if let Outcome::Failed { phase, .. } = &input.outcome {
        return finish_failed(
            log,
            &format!(
                "Future#WaitForCompletion: the image capture failed during {phase:?} (emulated failure)"
            ),
        );
    }
    log.ui("==> azure-arm: Removing the created Deployment object: 'pkrdp0emulated'");
    log.ui(&format!(
        "==> azure-arm: Deleting individual resources in '{temp_rg}' ..."
    ));
    for n in 0..20 {
        log.plugin(&format!("[DEBUG] cleanup: resource {n} deleted"));
    }
    log.ui("Build 'azure-arm' finished after 7 minutes 44 seconds.");
    log.ui("");
    log.ui("==> Wait completed after 7 minutes 44 seconds");
    log.ui("");
    log.ui("==> Builds finished. The artifacts of successful builds are:");
    log.ui("--> azure-arm: Azure.ResourceManagement.VMImage:");
    log.info("(telemetry) Finalizing.");
    log.text
}

fn finish_failed(mut log: Log, detail: &str) -> String {
    log.ui(&format!(
        "==> azure-arm: Step \"StepProvision\" failed: {detail}"
    ));
    log.ui("==> azure-arm: Deleting individual resources ...");
    for n in 0..20 {
        log.plugin(&format!("[DEBUG] cleanup: resource {n} deleted"));
    }
    log.err(&format!(
        "Build 'azure-arm' errored after 4 minutes 18 seconds: {detail}"
    ));
    log.ui("");
    log.ui("==> Wait completed after 4 minutes 18 seconds");
    log.ui("");
    log.ui("==> Some builds didn't complete successfully and had errors:");
    log.ui(&format!("--> azure-arm: {detail}"));
    log.ui("");
    log.ui("==> Builds finished but no artifacts were created.");
    log.info("(telemetry) Finalizing.");
    log.text
}

/// Writes `content` to `{account blob endpoint}packerlogs/{blob}` with shared-key auth,
/// creating the container when needed.
pub async fn upload(
    http: &reqwest::Client,
    account: &StorageAccountConfig,
    blob: &str,
    content: String,
) -> Result<()> {
    crate::blobs::put(
        http,
        account,
        "packerlogs",
        blob,
        content.into_bytes(),
        "text/plain; charset=utf-8",
    )
    .await
    .map(|_| ())
}
