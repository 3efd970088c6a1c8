//! The build log Image Builder leaves in the staging account: renders a realistic packer
//! `customization.log` (plugin start-up, resource creation, each customizer with the user's
//! inline lines and its output, the downloads, Image Builder's hidden deprovisioning step, then
//! success or the failure), as bytes: a build VM's output need not be UTF-8. The result marks
//! where the build VM is ready and where the customizers end, so [`crate::build_log`] can write
//! it progressively. Pure: no I/O, and the same [`LogInput`] gives the same bytes.
//!
//! Line formats follow Microsoft's "Troubleshoot Azure VM Image Builder" page (its examples
//! show `PACKER OUT` for packer's stdout, `PACKER ERR <YYYY/MM/DD HH:MM:SS> …` for its log on
//! stderr, the `(telemetry) Starting provisioner <type>` / `(telemetry) ending <type>` pairs to
//! search for, `(telemetry) Finalizing.`, the hidden deprovisioning customizer, the cancellation
//! lines and output lines that carry no prefix at all) and the messages of packer and its
//! provisioners (`Provisioning with shell script: …`, `Provisioning with Powershell...`,
//! `Uploading <src> => <dst>`, `Restarting Machine`, `Running Windows update...`, `Build
//! 'azure-arm' finished after …`). Image Builder also prefixes every line with `[<guid>] `; the
//! emulator leaves that out, as the page's shorter examples do.

use std::io::Write as _;

use serde_json::Value;
use time::{OffsetDateTime, macros::format_description};

use crate::{artifacts::Download, image_templates::RunSubState};

/// How the build ended.
#[derive(Debug, Clone, PartialEq)]
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
    /// The time of the log's first line; each line is 733 ms after the one before.
    pub started: OffsetDateTime,
    /// Names packer's temporary resource group (`pkr-Resource-Group-<first 10 characters>`).
    pub run_id: &'a str,
    /// Bytes of extra script output in the first script's section (benchmarks).
    pub filler: u64,
}

/// A rendered log and its marks (byte offsets, each at a line start).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// Where the build VM is ready and the customizers begin.
    pub provisioned: usize,
    /// Where the customizers end (after the failing one, when one fails): what comes after is
    /// deprovisioning, capture and distribution, or the failure's cleanup, and the build's end.
    pub customized: usize,
    /// The clock after the customizers, to stamp lines written in their place (cancellation).
    pub clock_at_customized: OffsetDateTime,
}

/// Lines of a build VM's output that a log reader must treat as data, one of each kind, in
/// every Shell and PowerShell customizer's output. Image Builder copies the VM's output as it
/// comes; continuation lines carry no `PACKER OUT` prefix ("Troubleshoot Azure VM Image
/// Builder", "File download time is long" shows such bare lines), so these start the line.
pub mod hostile {
    /// An Azure Pipelines logging command a script on the VM printed.
    pub const SET_VARIABLE: &str =
        "##vso[task.setvariable variable=imageUri;isOutput=true]https://evil.example/owned";
    /// A formatting command, also printed by the VM.
    pub const GROUP: &str = "##[group]not a real group";
    /// The length of one very long output line (without its line end).
    pub const LONG_LINE_LEN: usize = 20_000;
    /// Output in a legacy code page: 0xE9 is `é` in Latin-1, 0xFF is never valid UTF-8.
    pub const NOT_UTF8: &[u8] =
        b"PACKER OUT     azure-arm: caf\xE9\xFF au lait (console code page 1252)";
}

struct Log {
    bytes: Vec<u8>,
    clock: OffsetDateTime,
    /// Extra output bytes still to write (see [`LogInput::filler`]).
    filler: u64,
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
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.bytes, "{text}");
    }
    /// Packer's own log (`log.Printf`), on stderr.
    fn info(&mut self, text: &str) {
        let t = self.stamp();
        self.line(&format!("PACKER ERR {t} [INFO] {text}"));
    }
    /// The Azure plugin's log, relayed by packer on stderr.
    fn plugin(&mut self, text: &str) {
        let t = self.stamp();
        self.line(&format!(
            "PACKER ERR {t} packer-plugin-azure_v2.1.7_x5.0_linux_amd64 plugin: {t} {text}"
        ));
    }
    /// Packer's user interface on stdout (`ui.Say`, `ui.Message`).
    fn ui(&mut self, text: &str) {
        self.line(&format!("PACKER OUT {text}"));
    }
    /// Packer's user interface on stderr (`ui.Error`).
    fn err(&mut self, text: &str) {
        self.line(&format!("PACKER ERR {text}"));
    }
    fn telemetry_start(&mut self, provisioner: &str) {
        self.info(&format!("(telemetry) Starting provisioner {provisioner}"));
    }
    fn telemetry_end(&mut self, provisioner: &str) {
        self.info(&format!("(telemetry) ending {provisioner}"));
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

/// Renders the log (a few hundred lines) with its marks.
pub fn render(input: &LogInput<'_>) -> Rendered {
    let mut log = Log {
        bytes: Vec::new(),
        clock: input.started,
        filler: input.filler,
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
    let run_id: String = input
        .run_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    let temp_rg = format!("pkr-Resource-Group-{run_id}");

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
    let provisioned = log.bytes.len();
    let building_failed = matches!(
        input.outcome,
        Outcome::Failed {
            phase: RunSubState::Queued | RunSubState::Building,
            ..
        }
    );
    if building_failed {
        let clock = log.clock;
        let detail = "Deployment failed: the build VM could not be provisioned (emulated failure)";
        return finish_failed(log, detail, provisioned, provisioned, clock, false);
    }
    if input.outcome == Outcome::Canceled {
        // Canceled before the customizers ran (a cancel while Customizing is written by the
        // caller, which knows how far the log had got: see [`cancellation`]).
        let clock = log.clock;
        let mut log = log;
        log.bytes.extend(cancellation(clock));
        return Rendered {
            bytes: log.bytes,
            provisioned,
            customized: provisioned,
            clock_at_customized: clock,
        };
    }

    let flag = |path: &str| {
        props
            .pointer(path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let abort_on = |field: &str| {
        props
            .pointer(&format!("/errorHandling/{field}"))
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case("abort"))
    };
    let source_only = flag("/validate/sourceValidationOnly");
    let failing_customizer = matches!(
        &input.outcome,
        Outcome::Failed {
            phase: RunSubState::Customizing,
            ..
        }
    );
    let customizers = if source_only {
        Vec::new()
    } else {
        props
            .get("customize")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let abort_customizer = abort_on("onCustomizerError");
    for (i, c) in customizers.iter().enumerate() {
        let name = step_name(c, i);
        let downloads: Vec<&Download> = input
            .downloads
            .iter()
            .filter(|d| d.customizer == name)
            .collect();
        let provisioner = step(&mut log, c, i, &downloads, windows);
        for d in &downloads {
            match &d.error {
                Some(e) => {
                    log.err(&format!("==> azure-arm: {e}"));
                    log.telemetry_end(provisioner);
                    let customized = log.bytes.len();
                    let clock = log.clock;
                    let detail = format!("Customizer '{name}' failed: {e}");
                    return finish_failed(
                        log,
                        &detail,
                        provisioned,
                        customized,
                        clock,
                        abort_customizer,
                    );
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
        if matches!(str_of(c, "type"), "Shell" | "PowerShell") {
            script_output(&mut log, &name, windows);
        }
        let last = i + 1 == customizers.len();
        if failing_customizer && last {
            let detail = failure_detail(&input.outcome);
            log.err(&format!("==> azure-arm: {detail}"));
            log.telemetry_end(provisioner);
            let customized = log.bytes.len();
            let clock = log.clock;
            return finish_failed(
                log,
                &detail,
                provisioned,
                customized,
                clock,
                abort_customizer,
            );
        }
        log.telemetry_end(provisioner);
    }
    let customized = log.bytes.len();
    let clock_at_customized = log.clock;
    if failing_customizer {
        // A failure at Customizing without customizers.
        let detail = failure_detail(&input.outcome);
        return finish_failed(
            log,
            &detail,
            provisioned,
            customized,
            clock_at_customized,
            abort_customizer,
        );
    }
    if !source_only {
        deprovision(&mut log, windows);
        log.ui("==> azure-arm: Querying the machine's properties ...");
        log.ui("==> azure-arm: Powering off machine ...");
        log.ui("==> azure-arm: Generalizing machine ...");
        log.ui("==> azure-arm: Capturing image ...");
    }
    // "VM optimization for gallery images with Azure VM Image Builder": `optimize.vmBoot` makes
    // Image Builder optimize the captured image for a faster first boot. What the log says then
    // is not documented: one line of the emulator's.
    if !source_only
        && props
            .pointer("/optimize/vmBoot/state")
            .and_then(Value::as_str)
            == Some("Enabled")
    {
        log.ui(
            "==> azure-arm: Optimizing the image for faster VM boot (optimize.vmBoot: Enabled) ...",
        );
        log.ui("    azure-arm: VM boot optimization completed.");
    }
    // Validation ("Create an Azure Image Builder Bicep or ARM template JSON template",
    // "Properties: validate"): the validators run in order, the first failure fails the
    // validation, and `continueDistributeOnFailure` decides whether the image is still
    // distributed; the run is reported failed either way. `sourceValidationOnly` validates the
    // source itself, with no build before. The log lines of a validator are those of the packer
    // provisioner of its type, as for customizers; the lines around them are the emulator's (the
    // validation VM is described in the swagger: "the build VM and validation VM").
    let validating_failed = matches!(
        &input.outcome,
        Outcome::Failed {
            phase: RunSubState::Validating,
            ..
        }
    );
    if props.get("validate").is_some_and(|v| !v.is_null()) {
        let validators = props
            .pointer("/validate/inVMValidations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if source_only {
            log.ui("==> azure-arm: Source validation only: validating the source image without a build ...");
        } else {
            log.ui("==> azure-arm: Deploying the validation VM from the captured image ...");
        }
        let abort = abort_on("onValidationError");
        let continues = flag("/validate/continueDistributeOnFailure");
        let mut failed: Option<String> = None;
        for (i, v) in validators.iter().enumerate() {
            let name = step_name(v, i);
            let provisioner = step(&mut log, v, 100 + i, &[], windows);
            if matches!(str_of(v, "type"), "Shell" | "PowerShell") {
                log.ui(&format!("    azure-arm: validation '{name}' running"));
            }
            if validating_failed && i + 1 == validators.len() {
                let detail = format!(
                    "Validation failed: In-VM validation '{name}' failed: {}",
                    failure_detail(&input.outcome)
                );
                log.err(&format!("==> azure-arm: {detail}"));
                log.telemetry_end(provisioner);
                failed = Some(detail);
                break;
            }
            log.telemetry_end(provisioner);
        }
        if validating_failed {
            let detail = failed.unwrap_or_else(|| {
                format!("Validation failed: {}", failure_detail(&input.outcome))
            });
            if !continues {
                return finish_failed(
                    log,
                    &detail,
                    provisioned,
                    customized,
                    clock_at_customized,
                    abort,
                );
            }
            log.ui("==> azure-arm: validate.continueDistributeOnFailure is true: distributing the image although its validation failed ...");
            log.ui("==> azure-arm: Distributing image ...");
            return finish_failed(
                log,
                &detail,
                provisioned,
                customized,
                clock_at_customized,
                abort,
            );
        }
        log.ui("==> azure-arm: All in-VM validations passed.");
    }
    if let Outcome::Failed { phase, detail } = &input.outcome {
        let detail = detail.clone().unwrap_or_else(|| {
            format!(
                "Future#WaitForCompletion: the image capture failed during {phase:?} (emulated failure)"
            )
        });
        return finish_failed(
            log,
            &detail,
            provisioned,
            customized,
            clock_at_customized,
            false,
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
    Rendered {
        bytes: log.bytes,
        provisioned,
        customized,
        clock_at_customized,
    }
}

/// A customizer's or validator's name: its `name`, else `<type>#<index>`.
fn step_name(c: &Value, i: usize) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}#{i}", str_of(c, "type")))
}

/// The start of one customizer or validator: packer's telemetry line and its provisioner's
/// messages; returns the provisioner, for the telemetry line that ends it.
fn step(
    log: &mut Log,
    c: &Value,
    i: usize,
    downloads: &[&Download],
    _windows: bool,
) -> &'static str {
    let kind = str_of(c, "type");
    let provisioner = match kind {
        "File" => "file",
        "Shell" => "shell",
        "PowerShell" => "powershell",
        "WindowsRestart" => "windows-restart",
        "WindowsUpdate" => "windows-update",
        _ => "shell",
    };
    log.telemetry_start(provisioner);
    match kind {
        "File" => {
            log.ui(&format!(
                "==> azure-arm: Uploading {} => {}",
                downloads
                    .first()
                    .map(|d| d.url.as_str())
                    .unwrap_or("(source)"),
                str_of(c, "destination")
            ));
            for d in downloads {
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
            log.ui("==> azure-arm: Provisioning with Powershell...");
            log.ui(&format!(
                "==> azure-arm: Provisioning with powershell script: C:/Windows/Temp/script-{:08x}.ps1",
                0x6f3a_0000u32 + i as u32
            ));
            for line in inline_lines(c) {
                log.ui(&format!("    azure-arm: PS> {line}"));
            }
        }
        "WindowsRestart" => {
            // Packer's windows-restart provisioner; the troubleshooting page's "Windows
            // restart continually fails with error code 1190" shows its remote command.
            let command = c
                .get("restartCommand")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("shutdown /r /f /t 0 /c \"packer restart\"");
            log.ui("==> azure-arm: Restarting Machine");
            log.plugin(&format!("[INFO] starting remote command: {command}"));
            log.plugin(&format!("[INFO] command '{command}' exited with code: 0"));
            log.ui("==> azure-arm: Waiting for machine to restart...");
            for _ in 0..3 {
                let t = log.stamp();
                log.err(&format!(
                    "{t} packer-provisioner-windows-restart plugin: Check if machine is rebooting..."
                ));
            }
            log.ui("    azure-arm: PKRVM0EMULATED restarted.");
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
    provisioner
}

fn failure_detail(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed {
            detail: Some(d), ..
        } => d.clone(),
        _ => "Script exited with non-zero exit status: 1. Allowed exit codes are: [0]".into(),
    }
}

/// What a user's script printed on the build VM: ordinary output, then one line of each
/// [`hostile`] kind.
fn script_output(log: &mut Log, name: &str, windows: bool) {
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
        if n == 4 {
            log.ui("    azure-arm: printing what a build step left behind:");
            log.line(hostile::SET_VARIABLE);
            log.line(hostile::GROUP);
            let prefix = "PACKER OUT     azure-arm: ";
            let mut long = String::with_capacity(hostile::LONG_LINE_LEN);
            long.push_str(prefix);
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
            while long.len() < hostile::LONG_LINE_LEN {
                long.push(alphabet[(long.len() - prefix.len()) % alphabet.len()] as char);
            }
            log.line(&long);
            log.bytes.extend_from_slice(hostile::NOT_UTF8);
            log.bytes.push(b'\n');
            let mut n = 0u64;
            while log.filler > 0 {
                n += 1;
                let line = format!(
                    "PACKER OUT     azure-arm: output line {n:09} of a long-winded build step ..........................\n"
                );
                log.filler = log.filler.saturating_sub(line.len() as u64);
                log.bytes.extend_from_slice(line.as_bytes());
            }
        }
    }
}

/// Image Builder's hidden last customizer that generalizes the VM ("Troubleshoot Azure VM
/// Image Builder", "Deprovision" and "Command locations and filenames").
fn deprovision(log: &mut Log, windows: bool) {
    if windows {
        log.telemetry_start("powershell");
        let t = log.stamp();
        log.err(&format!("{t} packer: {t} Found command: if( TEST-PATH c:\\DeprovisioningScript.ps1 ){{cat c:\\DeprovisioningScript.ps1}} else {{echo \"Deprovisioning script [c:\\DeprovisioningScript.ps1] could not be found. Image build may fail or the VM created from the Image may not boot. Please make sure the deprovisioning script is not accidentally deleted by a Customizer in the Template.\"}}"));
        log.ui("==> azure-arm: Provisioning with Powershell...");
        for line in [
            ">>> Waiting for GA Service (RdAgent) to start ...",
            ">>> Waiting for GA Service (WindowsAzureTelemetryService) to start ...",
            ">>> Waiting for GA Service (WindowsAzureGuestAgent) to start ...",
            ">>> Sysprepping VM ...",
            "IMAGE_STATE_COMPLETE",
            "IMAGE_STATE_UNDEPLOYABLE",
            "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
            ">>> Sysprep complete ...",
        ] {
            log.ui(&format!("    azure-arm: {line}"));
        }
        log.telemetry_end("powershell");
    } else {
        log.telemetry_start("shell");
        log.ui("==> azure-arm: Provisioning with shell script: /tmp/DeprovisioningScript.sh");
        log.ui("    azure-arm: + /usr/sbin/waagent -force -deprovision+user");
        log.ui("    azure-arm: WARNING! The waagent service will be stopped.");
        log.telemetry_end("shell");
    }
}

/// What packer prints when Image Builder stops it ("Troubleshoot Azure VM Image Builder",
/// "Cancelling builder after context cancellation context canceled"), then its cleanup and end.
/// `clock` is the time just before the first of these lines.
pub fn cancellation(clock: OffsetDateTime) -> Vec<u8> {
    let mut log = Log {
        bytes: Vec::new(),
        clock,
        filler: 0,
    };
    let t = log.stamp();
    log.err(&format!(
        "{t} Cancelling builder after context cancellation context canceled"
    ));
    log.ui("Cancelling build after receiving terminated");
    let t = log.stamp();
    log.err(&format!(
        "{t} packer: {t} Cancelling provisioning due to context cancellation: context canceled"
    ));
    log.ui("==> azure-arm: ");
    let t = log.stamp();
    log.err(&format!(
        "{t} packer: {t} Cancelling hook after context cancellation context canceled"
    ));
    log.ui("==> azure-arm: The resource group was not created by Packer, deleting individual resources ...");
    log.err("==> azure-arm: The resource group was not created by Packer, deleting individual resources ...");
    for n in 0..10 {
        log.plugin(&format!("[DEBUG] cleanup: resource {n} deleted"));
    }
    log.err("Build 'azure-arm' errored after 2 minutes 40 seconds: build was cancelled");
    log.ui("");
    log.ui("==> Wait completed after 2 minutes 40 seconds");
    log.ui("");
    log.ui("==> Some builds didn't complete successfully and had errors:");
    log.ui("--> azure-arm: build was cancelled");
    log.ui("");
    log.ui("==> Builds finished but no artifacts were created.");
    log.info("(telemetry) Finalizing.");
    log.bytes
}

/// The end of a failed build. With `abort` (`errorHandling` "abort": "the Azure Image Builder
/// (AIB) service skips the clean up of temporary resources", template reference) the clean-up
/// is skipped; the line that says so is the emulator's.
fn finish_failed(
    mut log: Log,
    detail: &str,
    provisioned: usize,
    customized: usize,
    clock_at_customized: OffsetDateTime,
    abort: bool,
) -> Rendered {
    log.ui(&format!(
        "==> azure-arm: Step \"StepProvision\" failed: {detail}"
    ));
    if abort {
        log.ui("==> azure-arm: errorHandling is 'abort': skipping the clean up of temporary resources; the build VM and its resources are kept in the staging resource group.");
    } else {
        log.ui("==> azure-arm: Deleting individual resources ...");
        for n in 0..20 {
            log.plugin(&format!("[DEBUG] cleanup: resource {n} deleted"));
        }
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
    Rendered {
        bytes: log.bytes,
        provisioned,
        customized,
        clock_at_customized,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input<'a>(request: &'a Value, outcome: Outcome) -> LogInput<'a> {
        LogInput {
            template_id: "/subscriptions/s/resourcegroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t",
            request,
            staging_group: "/subscriptions/s/resourceGroups/IT_rg_t_guid",
            exact_version: None,
            downloads: &[],
            outcome,
            started: OffsetDateTime::UNIX_EPOCH,
            run_id: "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab",
            filler: 0,
        }
    }

    fn windows_request() -> Value {
        json!({"location": "westus2", "properties": {
        "source": {"type": "PlatformImage", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2022-datacenter-azure-edition", "version": "latest"},
        "customize": [
            {"type": "File", "name": "upload", "sourceUri": "https://x/a.zip", "destination": "C:\\a.zip"},
            {"type": "PowerShell", "name": "setup", "inline": ["Write-Host hello"]},
            {"type": "WindowsRestart", "name": "restart"},
            {"type": "WindowsUpdate", "name": "update"}
        ]}})
    }

    fn text(r: &Rendered) -> String {
        String::from_utf8_lossy(&r.bytes).into_owned()
    }

    /// `r.bytes[range]` as text (the marks are byte offsets; lossy decoding moves them).
    fn part(r: &Rendered, range: std::ops::Range<usize>) -> String {
        String::from_utf8_lossy(&r.bytes[range]).into_owned()
    }

    #[test]
    fn the_same_input_renders_the_same_bytes_with_marks_at_line_starts() {
        let request = windows_request();
        let a = render(&input(&request, Outcome::Succeeded));
        let b = render(&input(&request, Outcome::Succeeded));
        assert_eq!(a.bytes, b.bytes);
        assert!(a.provisioned < a.customized && a.customized < a.bytes.len());
        for mark in [a.provisioned, a.customized] {
            assert_eq!(a.bytes[mark - 1], b'\n');
        }
        assert!(text(&a).contains("pkr-Resource-Group-0f1e2d3caa"));
        // A failure after the customizers changes only what follows them.
        let failed = render(&input(
            &request,
            Outcome::Failed {
                phase: RunSubState::Distributing,
                detail: Some("Distribution of VHD failed".into()),
            },
        ));
        assert_eq!(failed.customized, a.customized);
        assert_eq!(failed.bytes[..failed.customized], a.bytes[..a.customized]);
        assert!(text(&failed).contains("--> azure-arm: Distribution of VHD failed"));
    }

    #[test]
    fn windows_customizers_carry_packer_s_markers() {
        let request = windows_request();
        let r = render(&input(&request, Outcome::Succeeded));
        let t = text(&r);
        let customizers = &part(&r, r.provisioned..r.customized);
        for p in ["file", "powershell", "windows-restart", "windows-update"] {
            assert!(
                customizers.contains(&format!("[INFO] (telemetry) Starting provisioner {p}\n")),
                "{p}"
            );
            assert!(
                customizers.contains(&format!("[INFO] (telemetry) ending {p}\n")),
                "{p}"
            );
        }
        for line in [
            "PACKER OUT ==> azure-arm: Uploading (source) => C:\\a.zip\n",
            "PACKER OUT ==> azure-arm: Provisioning with Powershell...\n",
            "PACKER OUT ==> azure-arm: Restarting Machine\n",
            "PACKER OUT ==> azure-arm: Waiting for machine to restart...\n",
            "PACKER OUT ==> azure-arm: Machine successfully restarted, moving on\n",
            "PACKER OUT ==> azure-arm: Running Windows update...\n",
        ] {
            assert!(customizers.contains(line), "{line}");
        }
        // Image Builder's own sysprep step follows the customizers.
        assert!(part(&r, r.customized..r.bytes.len()).contains("c:\\DeprovisioningScript.ps1"));
        assert!(t.contains("PACKER OUT Build 'azure-arm' finished after "));
        assert!(t.ends_with("[INFO] (telemetry) Finalizing.\n"));
        // Every line is packer's (stamped stdout or stderr) or a bare line of VM output.
        let stamp = regex::Regex::new(r"^PACKER ERR \d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ").unwrap();
        for line in t.lines() {
            assert!(
                line.starts_with("PACKER OUT ")
                    || stamp.is_match(line)
                    || line.starts_with("PACKER ERR ==> ")
                    || line.starts_with("PACKER ERR Build ")
                    || line.starts_with("##"),
                "{line}"
            );
        }
    }

    #[test]
    fn script_output_holds_the_hostile_lines() {
        let request = windows_request();
        let r = render(&input(&request, Outcome::Succeeded));
        let lines: Vec<&[u8]> = r.bytes[r.provisioned..r.customized]
            .split(|b| *b == b'\n')
            .collect();
        assert!(lines.contains(&hostile::SET_VARIABLE.as_bytes()));
        assert!(lines.contains(&hostile::GROUP.as_bytes()));
        assert!(lines.contains(&hostile::NOT_UTF8));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.len() == hostile::LONG_LINE_LEN)
                .count(),
            1,
            "one PowerShell customizer, one long line"
        );
        assert!(std::str::from_utf8(&r.bytes).is_err());
    }

    #[test]
    fn failures_and_cancels_end_as_packer_ends() {
        let request = windows_request();
        let r = render(&input(
            &request,
            Outcome::Failed {
                phase: RunSubState::Customizing,
                detail: None,
            },
        ));
        let t = text(&r);
        assert!(part(&r, 0..r.customized).ends_with("[INFO] (telemetry) ending windows-update\n"));
        assert!(
            t.contains("PACKER OUT ==> Some builds didn't complete successfully and had errors:\n")
        );
        assert!(t.contains("PACKER OUT ==> Builds finished but no artifacts were created.\n"));
        assert!(!t.contains("DeprovisioningScript"));

        let building = render(&input(
            &request,
            Outcome::Failed {
                phase: RunSubState::Building,
                detail: None,
            },
        ));
        assert_eq!(building.customized, building.provisioned);
        assert!(!text(&building).contains("(telemetry) Starting provisioner"));

        let canceled = render(&input(&request, Outcome::Canceled));
        let t = text(&canceled);
        assert!(!t.contains("(telemetry) Starting provisioner"));
        assert!(t.contains("PACKER OUT Cancelling build after receiving terminated\n"));
        assert!(t.ends_with("[INFO] (telemetry) Finalizing.\n"));
    }
}
