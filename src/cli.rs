//! The command line: the subcommands and how each is carried out, from raw inputs to the
//! exit code. Failures become an error issue, `task.complete result=Failed` and exit code 1,
//! as the agent expects.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::agent::{Console, Environment, PipelineContext, TaskResult};
use crate::arm::ArmClient;
use crate::auth;
use crate::inputs::TaskInputs;
use crate::transport::{self, TransportSettings};

#[derive(Parser, Debug)]
#[command(
    name = "aib-task",
    version,
    about = "Azure VM Image Builder for Azure Pipelines, as one native binary",
    long_about = "Azure VM Image Builder for Azure Pipelines, as one native binary.\n\nIn a pipeline the agent starts it with its inputs in INPUT_* variables and the service connection in ENDPOINT_* variables; from a terminal every input is also a flag.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        }
    }
}

/// Runs the command line against a captured environment; the binary's whole life.
pub fn main_with(env: Environment, args: Vec<std::ffi::OsString>) -> ExitCode {
    let context = PipelineContext::from_env(&env);
    let console = Console::stdout(context.debug);
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
            if context.in_pipeline {
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
    let outcome = runtime.block_on(execute(cli.command, &env, &context, &console));
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
        &flags.options(env),
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
