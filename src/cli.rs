//! The command line: the subcommands and how each is carried out, from raw inputs to the
//! exit code. Failures become an error issue, `task.complete result=Failed` and exit code 1,
//! as the agent expects.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use anyhow::anyhow;

use crate::agent::{Console, Environment, Host, PipelineContext, ServiceConnection, TaskResult};
use crate::arm::ArmClient;
use crate::auth;
use crate::inputs::TaskInputs;
use crate::plan::{self, BuildPlan};
use crate::transport::{self, TransportSettings};
use crate::upload::UploadSettings;
use crate::{archive, build, image_template, inputs, rehearse, storage};

#[derive(Parser, Debug)]
#[command(
    name = "aib-task",
    version,
    about = "Azure VM Image Builder for Azure Pipelines, as one native binary",
    long_about = "Azure VM Image Builder for Azure Pipelines, as one native binary.\n\nIn a pipeline the agent starts it with its inputs in INPUT_* variables and the service connection in ENDPOINT_* variables; from a terminal every input is also a flag.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command: `run`, as the agent starts the task.
    #[command(flatten)]
    pub run: TaskArgs,
}

/// The task's inputs and how to sign in when no service connection is given.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskArgs {
    #[command(flatten)]
    pub inputs: TaskInputs,
    #[command(flatten)]
    pub sign_in: SignInFlags,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the image: stage the build path, create and run the Image Builder template, set
    /// the output variables, clean up. What the agent runs (also the default with no command).
    Run(TaskArgs),
    /// Print the exact template JSON the build would create, with the artifact's real checksum
    /// and a placeholder for its SAS, making no change in Azure (it signs in to read the
    /// storage account and the base image's versions).
    Template(TaskArgs),
    /// Check every input and the service connection's variables, without signing in.
    Validate(TaskArgs),
    /// Read Azure for what would fail the build (providers, groups, identity and roles, source,
    /// gallery, network, storage firewall, VM size), changing nothing; `run` does the same
    /// first. Exits non-zero when a check finds an error.
    Preflight {
        #[command(flatten)]
        args: TaskArgs,
        /// Print the report as JSON (after the log lines).
        #[arg(long)]
        json: bool,
    },
    /// Rehearse the customization on this machine: the template's steps (artifact download and
    /// extraction, the inline script, the customizers file's Shell steps) in a container or
    /// chroot resembling the base image, writing nothing to Azure (it signs in only to read a
    /// gallery image definition). See README "Rehearsals".
    Rehearse(TaskArgs),
    /// Sign in (with the service connection named by ibSubscription, else with the AZURE_*
    /// variables or the Azure CLI), report who signed in and how, and check that the
    /// subscription is reachable, without changing anything in Azure.
    ///
    /// Outside a pipeline: AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET,
    /// AZURE_CLIENT_CERTIFICATE_PATH (an unencrypted PEM with certificate and key) or
    /// AZURE_FEDERATED_TOKEN_FILE; AZURE_AUTHORITY_HOST for another cloud; else `az login`.
    /// A managed identity connection asks IMDS at http://169.254.169.254/ unless
    /// AIB_IMDS_ENDPOINT names another address.
    SignIn {
        #[command(flatten)]
        inputs: TaskInputs,
        #[command(flatten)]
        sign_in: SignInFlags,
    },
}

/// How to sign in outside a pipeline (a service connection, when given, decides everything).
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "Sign-in outside a pipeline")]
pub struct SignInFlags {
    /// The subscription (id) to work in when no service connection names one; default
    /// AZURE_SUBSCRIPTION_ID.
    #[arg(long = "subscription", value_name = "ID")]
    pub subscription: Option<String>,
    /// The resource manager of a cloud other than the public, China and US Government ones
    /// (those follow AZURE_AUTHORITY_HOST); default AZURE_RESOURCE_MANAGER_URL.
    #[arg(long = "resource-manager-url", value_name = "URL")]
    pub resource_manager_url: Option<String>,
}

impl SignInFlags {
    fn options(&self, env: &Environment) -> auth::LocalOptions {
        auth::LocalOptions {
            subscription: self
                .subscription
                .clone()
                .or_else(|| env.get("AZURE_SUBSCRIPTION_ID").map(str::to_owned)),
            resource_manager_url: self
                .resource_manager_url
                .clone()
                .or_else(|| env.get("AZURE_RESOURCE_MANAGER_URL").map(str::to_owned)),
            ..Default::default()
        }
    }

    /// [`SignInFlags::options`] with the sign-in inputs (`clientId`, `tenantId`,
    /// `subscriptionId`, `environment`); a flag wins over an input, an input over `AZURE_*`.
    fn options_for(&self, inputs: &TaskInputs, env: &Environment) -> auth::LocalOptions {
        let input = |raw: &Option<String>| inputs::value(raw).map(str::to_owned);
        let mut options = self.options(env);
        if self.subscription.is_none()
            && let Some(id) = input(&inputs.subscription_id)
        {
            options.subscription = Some(id);
        }
        options.client_id = input(&inputs.client_id);
        options.tenant_id = input(&inputs.tenant_id);
        options.environment = input(&inputs.environment);
        options
    }
}

/// Runs the command line against a captured environment; the binary's whole life.
pub fn main_with(env: Environment, args: Vec<std::ffi::OsString>) -> ExitCode {
    let context = PipelineContext::from_env(&env);
    // Azure Pipelines, GitHub Actions or a terminal: decided once, rendered by the console.
    let host = Host::detect(&env, std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // `preflight --json`: the report alone on standard output, the log on standard error.
    let json_only = args.iter().any(|a| a == "preflight") && args.iter().any(|a| a == "--json");
    let out: Box<dyn std::io::Write + Send> = if json_only {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let console = Console::for_host(host, out, context.debug);
    // GitHub's OIDC request token is a secret of the job: masked before anything could print it.
    if let Some(token) = env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN") {
        console.set_secret(token);
    }
    crate::init_tracing(&console);

    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            if !console.host().is_terminal() {
                fail(&console, &e.kind().to_string());
            }
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail(&console, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::Run(cli.run));
    let outcome = runtime.block_on(execute(command, &env, &context, &console));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(&console, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn fail(console: &Console, message: &str) {
    console.error(message);
    console.complete(TaskResult::Failed, message);
}

async fn execute(
    command: Command,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    match command {
        Command::Run(args) => run_command(&args, env, context, console).await,
        Command::Template(args) => template_command(&args, env, context, console).await,
        Command::Validate(args) => validate_command(&args, env, context, console).map(|_| ()),
        Command::Preflight { args, json } => {
            preflight_command(&args, json, env, context, console).await
        }
        Command::Rehearse(args) => {
            let plan = validate_command(&args, env, context, console)?;
            rehearse_plan(&args, &plan, env, context, console).await
        }
        Command::SignIn { inputs, sign_in } => {
            sign_in_command(&inputs, &sign_in, env, context, console).await
        }
    }
}

/// The subscription read that proves the token works (any stable version ARM accepts).
const SUBSCRIPTIONS_API: &str = "2022-12-01";

async fn sign_in_command(
    inputs: &TaskInputs,
    flags: &SignInFlags,
    env: &Environment,
    _context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    let http = transport::build_client(&TransportSettings::from_env(env)?, console)?;
    let signed = auth::sign_in(
        env,
        inputs.ib_subscription.as_deref(),
        &flags.options_for(inputs, env),
        http.clone(),
        console,
    )
    .await?;
    let cloud = &signed.cloud;
    console.info(format!(
        "Signing in with {} as {} at {}",
        signed.source,
        signed.tokens.identity(),
        cloud
            .authority
            .as_ref()
            .map(|a| a.as_str())
            .unwrap_or("the Azure CLI's authority")
    ));
    signed
        .tokens
        .token(&cloud.arm_scope())
        .await
        .context("cannot get a token for Azure Resource Manager")?;
    console.info(format!(
        "Signed in as {} for {} (subscription {}), through {}",
        signed.tokens.identity(),
        cloud.resource_manager,
        signed
            .subscription_id
            .as_deref()
            .unwrap_or("not given: pass --subscription or set AZURE_SUBSCRIPTION_ID"),
        signed.source,
    ));
    if let Some(subscription) = &signed.subscription_id {
        let arm = ArmClient::new(
            http,
            cloud.resource_manager.clone(),
            cloud.arm_scope(),
            Arc::clone(&signed.tokens),
            Arc::clone(console),
        );
        let body: serde_json::Value = arm
            .get(
                "reading the subscription",
                &format!("/subscriptions/{subscription}"),
                SUBSCRIPTIONS_API,
            )
            .await?;
        console.info(format!(
            "Subscription '{}' ({subscription}) is reachable; state {}",
            body["displayName"].as_str().unwrap_or("?"),
            body["state"].as_str().unwrap_or("unknown")
        ));
    }
    Ok(())
}

/// The subscription the build works in, known without signing in: the service connection's
/// `SUBSCRIPTIONID`, else `--subscription` / `AZURE_SUBSCRIPTION_ID`.
fn subscription_for(args: &TaskArgs, env: &Environment) -> Result<String> {
    let local = args.sign_in.options_for(&args.inputs, env).subscription;
    if let Some(id) = inputs::value(&args.inputs.ib_subscription) {
        let connection = ServiceConnection::from_env(env, id, "ibSubscription")?;
        return connection.subscription_id.or(local).ok_or_else(|| {
            anyhow!(
                "the service connection '{id}' names no subscription (ENDPOINT_DATA_{id}_SUBSCRIPTIONID): use a connection scoped to a subscription"
            )
        });
    }
    local.ok_or_else(|| {
        anyhow!(
            "input 'ibSubscription' is not set and no subscription is given: outside a pipeline pass --subscription or set AZURE_SUBSCRIPTION_ID"
        )
    })
}

/// Reads and checks every input, as the original task announced it; every bad input is listed.
fn validate_command(
    args: &TaskArgs,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<BuildPlan> {
    console.info("start reading task parameters...");
    let subscription = subscription_for(args, env)?;
    let stamp = crate::names::Stamp::now(context);
    let plan =
        BuildPlan::from_inputs(&args.inputs, &subscription, context, &stamp).map_err(|errors| {
            for e in &errors {
                console.error(e.to_string());
            }
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow!(
                "{} invalid input{}: {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                list.join("; ")
            )
        })?;
    rehearse_settings(args, env)?;
    console.info(format!("found build at:  {}", plan.package_path.display()));
    for warning in plan.warnings() {
        console.warning(warning);
    }
    // Secret variables reach the task as SECRET_<NAME>. One found in a script is masked in
    // everything the task prints (the template, the summary) and named in a warning.
    let secrets: Vec<(&str, &str)> = env.with_prefix("SECRET_").collect();
    for exposure in plan::exposure::find(&plan, secrets) {
        console.set_secret(exposure.value);
        console.warning(exposure.warning());
    }
    console.info("end reading parameters");
    Ok(plan)
}

fn rehearse_settings(args: &TaskArgs, env: &Environment) -> Result<rehearse::Settings> {
    rehearse::Settings::from_inputs(&args.inputs, env).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow!(list.join("; "))
    })
}

/// Rehearses the plan (src/rehearse/), signing in only to read a gallery image definition.
async fn rehearse_plan(
    args: &TaskArgs,
    plan: &BuildPlan,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    let settings = rehearse_settings(args, env)?;
    let (http, arm) = if rehearse::needs_azure(plan, &settings) {
        let (http, _signed, arm) = connect(args, env, console).await?;
        (http, Some(arm))
    } else {
        let http = transport::build_client(&TransportSettings::from_env(env)?, console)?;
        (http, None)
    };
    rehearse::rehearse(plan, &settings, arm.as_ref(), http, context, console)
        .await
        .map(|_| ())
}

/// Signs in and sets up the ARM client for a build.
async fn connect(
    args: &TaskArgs,
    env: &Environment,
    console: &Arc<Console>,
) -> Result<(reqwest::Client, auth::SignedIn, ArmClient)> {
    let http = transport::build_client(&TransportSettings::from_env(env)?, console)?;
    let signed = auth::sign_in(
        env,
        args.inputs.ib_subscription.as_deref(),
        &args.sign_in.options_for(&args.inputs, env),
        http.clone(),
        console,
    )
    .await?;
    console.info(format!(
        "signed in as {} through {}",
        signed.tokens.identity(),
        signed.source
    ));
    let arm = ArmClient::new(
        http.clone(),
        signed.cloud.resource_manager.clone(),
        signed.cloud.arm_scope(),
        Arc::clone(&signed.tokens),
        Arc::clone(console),
    );
    Ok((http, signed, arm))
}

async fn run_command(
    args: &TaskArgs,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    // Listen for the agent's stop signal from the start: a cancelled task must not be killed
    // mid-way without asking Image Builder to stop.
    let cancel = build::cancellation();
    let plan = validate_command(args, env, context, console)?;
    if rehearse_settings(args, env)?.before_build {
        // A cancelled job stops the rehearsal at once: dropping it kills its steps (they are
        // spawned kill-on-drop) and removes its environment.
        let mut stop = cancel.clone();
        tokio::select! {
            rehearsed = rehearse_plan(args, &plan, env, context, console) => rehearsed?,
            _ = stop.wait_for(|c| *c) => {
                return Err(build::Cancelled(
                    "cancelled during the rehearsal; nothing was written to Azure".into(),
                )
                .into());
            }
        }
    }
    let (http, signed, arm) = connect(args, env, console).await?;
    let mut builder = build::Builder {
        arm: &arm,
        http,
        credential: signed.tokens.clone(),
        console,
        context,
        timing: build::Timing::from_env(env),
        upload: UploadSettings::default(),
        cancel,
    };
    builder.run(&plan).await.map(|_| ())
}

async fn preflight_command(
    args: &TaskArgs,
    json: bool,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    let plan = validate_command(args, env, context, console)?;
    let (_http, _signed, arm) = connect(args, env, console).await?;
    let report = crate::preflight::run(&arm, &plan).await;
    report.print(console);
    if json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        println!("{}", console.mask(&text));
    }
    match report.failure() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn template_command(
    args: &TaskArgs,
    env: &Environment,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    let plan = validate_command(args, env, context, console)?;
    let (_http, _signed, arm) = connect(args, env, console).await?;
    // The reads `run` makes before any write, so the template is the one `run` would send.
    let build::prepare::Prepared {
        plan,
        purchase_plan,
        ..
    } = build::prepare::prepare(&arm, console, &plan).await?;
    let template = if plan.source_validation_only() {
        console.info("sourceValidationOnly is true: nothing is customized and the build path is not uploaded");
        image_template::build_template(&plan, None, context)
    } else {
        artifact_template(&plan, &arm, context, console).await?
    };
    let mut template = template;
    if let image_template::Source::PlatformImage { plan_info, .. } = &mut template.properties.source
    {
        *plan_info = purchase_plan;
    }
    console.info(format!(
        "PUT {}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{}?api-version={}",
        arm_base(&arm),
        plan.subscription_id,
        plan.resource_group,
        plan.template_name,
        image_template::API_VERSION
    ));
    console.info(serde_json::to_string_pretty(&template).context("serialising the template")?);
    Ok(())
}

/// The template with the build path's archive as it would be staged: made only to know its
/// checksum and size, nothing is uploaded; the download URL shows where the blob would go.
async fn artifact_template(
    plan: &BuildPlan,
    arm: &ArmClient,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<image_template::ImageTemplate> {
    let account = storage::find_account(arm, &plan.subscription_id, &plan.storage_account).await?;
    // The archive is made here only to know its checksum and size; nothing is uploaded.
    let root = plan.package_path.clone();
    let (summary, sha256, size) = tokio::task::spawn_blocking(move || {
        let sink = archive::HashingWriter::new(std::io::sink());
        let (hashing, summary) = archive::write_archive(&root, sink)?;
        let (_, sha256, size) = hashing.finish();
        Ok::<_, archive::ArchiveError>((summary, sha256, size))
    })
    .await
    .context("the archiver failed")?
    .context("input 'packagePath'")?;
    let folder = archive::folder_name(&plan.package_path).context("input 'packagePath'")?;
    let sha256_hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    let placeholder = crate::names::Stamp {
        epoch_ms: 0,
        mark: "MARK".into(),
    };
    let blob = crate::names::blob_name(&folder, context, &placeholder)
        .replace("_0_MARK.zip", "_<epoch-ms>_<job mark>.zip");
    let mut url = account.blob_endpoint.clone();
    url.path_segments_mut()
        .map_err(|_| anyhow!("the blob endpoint cannot take a path"))?
        .pop_if_empty()
        .push(storage::CONTAINER)
        .extend(blob.split('/'));
    let download_url = format!("{url}?<read-only SAS made at run time>");
    let template = image_template::build_template(
        plan,
        Some(&image_template::ArtifactRef {
            download_url: &download_url,
            sha256_hex: &sha256_hex,
            size,
            folder: &folder,
        }),
        context,
    );
    console.info(format!(
        "archive of {}: {} files, {:.1} MiB, sha256 {sha256_hex}",
        plan.package_path.display(),
        summary.files,
        size as f64 / 1048576.0
    ));
    Ok(template)
}

fn arm_base(arm: &ArmClient) -> String {
    arm.url("/", "x")
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}
