//! The command line: the subcommands and how each is carried out, from raw inputs to the
//! exit code. Failures become an error issue, `task.complete result=Failed` and exit code 1,
//! as the agent expects.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::agent::{Console, Environment, PipelineContext, ServiceConnection, TaskResult};
use crate::auth::TokenSource;
use crate::inputs::{self, TaskInputs};
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
    /// Sign in with the service connection named by ibSubscription and report who signed in,
    /// without changing anything in Azure.
    SignIn {
        #[command(flatten)]
        inputs: TaskInputs,
    },
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
        Command::SignIn { inputs } => sign_in(&inputs, env, context, console).await,
    }
}

async fn sign_in(
    inputs: &TaskInputs,
    env: &Environment,
    _context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<()> {
    let id = inputs::required(
        "ibSubscription",
        &inputs.ib_subscription,
        "the id of an Azure Resource Manager service connection",
    )?;
    let connection = ServiceConnection::from_env(env, id, "ibSubscription")?;
    for secret in connection.credentials.secrets() {
        console.set_secret(secret);
    }
    let cloud = connection.cloud()?;
    let http = transport::build_client(&TransportSettings::from_env(env)?, console)?;
    let tokens = TokenSource::for_connection(&connection, &cloud, http, Arc::clone(console))?;
    console.info(format!(
        "Signing in with {} at {}",
        connection.credentials.describe(),
        cloud
            .authority
            .as_ref()
            .map(|a| a.as_str())
            .unwrap_or("(discovered authority)")
    ));
    tokens
        .token(&cloud.arm_scope())
        .await
        .context("cannot get a token for Azure Resource Manager")?;
    console.info(format!(
        "Signed in as {} '{}' in tenant '{}' for {} (subscription {})",
        connection.credentials.describe(),
        connection.client_id.as_deref().unwrap_or("-"),
        connection.tenant_id.as_deref().unwrap_or("-"),
        cloud.resource_manager,
        connection
            .subscription_id
            .as_deref()
            .unwrap_or("not given by the connection"),
    ));
    Ok(())
}
