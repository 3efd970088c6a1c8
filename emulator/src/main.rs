//! `aib-emulator`: starts the emulator (and optionally Azurite wired to it) with one command, for
//! the demo and manual testing. Prints one human line and one JSON line describing the endpoints
//! and test identities, then serves until SIGINT/SIGTERM.

use std::{path::PathBuf, time::Duration};

use aib_emulator::{
    Config, Emulator,
    azurite::{Azurite, AzuriteOptions, AzuriteTls},
    ca::CertificateAuthority,
};
use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

const AFTER_HELP: &str = "\
Scenario knobs: --config FILE.json takes the JSON form of aib_emulator::Config, every field optional
(durations in milliseconds, token lifetimes in seconds), e.g. emulator/scenarios/failing-build.json:
  {\"fail_at\": \"Customizing\", \"token_lifetime\": 60, \"storage_page_size\": 1,
   \"timing\": {\"lro\": 500, \"lro_min_polls\": 2, \"retry_after_secs\": 1, \"queued\": 300,
              \"building\": 1000, \"customizing\": 1500, \"optimizing\": 300, \"validating\": 300,
              \"distributing\": 1000, \"canceling\": 300, \"log_steps\": 8},
   \"faults\": [{\"method\": \"PUT\", \"path\": \"/imageTemplates/\",
                \"action\": {\"status\": {\"code\": 429, \"retry_after\": 2}}, \"times\": 1}]}
The flags above override the file. A template tag aib-emulator-fail-at=<sub-state> fails that
template's runs only. The build log (packerlogs/<guid>/customization.log, an append blob) grows in
timing.log_steps appends over Customizing; \"log_late\": MS delays its blob, \"log_rewrite\": true
re-creates it shorter halfway (per template: tags aib-emulator-log-late=MS, aib-emulator-log-rewrite=true).

Faults (actions: {\"status\": {\"code\", \"retry_after\", \"body\"}}, \"drop_connection\", {\"delay\": MS}):
  --fault JSON (repeatable), or at run time, without a token:
  POST   <base>_emulator/faults    one fault or an array
  GET    <base>_emulator/faults    the active faults and the uses each has left
  DELETE <base>_emulator/faults    remove all
Inspection: GET <base>_emulator/requests (the request log, secrets redacted),
  <base>_emulator/templates, <base>_emulator/downloads.";

#[derive(Parser)]
#[command(
    version,
    about = "Local Azure emulator (Entra ID, OIDC, IMDS, ARM, Image Builder) for aib-task's tests",
    after_help = AFTER_HELP
)]
struct Args {
    /// HTTPS port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Scenario file (JSON form of the Config; every field optional).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Append every request as a JSON line to this file.
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Also start Azurite and point the storage accounts at it.
    #[arg(long)]
    start_azurite: bool,
    /// Serve Azurite over HTTPS with a certificate from the emulator's CA.
    #[arg(long, requires = "start_azurite")]
    azurite_https: bool,
    /// Start Azurite with `--oauth basic` (implies --azurite-https).
    #[arg(long, requires = "start_azurite")]
    azurite_oauth: bool,
    /// Also serve IMDS over plain HTTP on another port.
    #[arg(long)]
    imds_http: bool,
    /// Make every build fail at this sub-state (Queued, Building, Customizing, Optimizing,
    /// Validating, Distributing).
    #[arg(long, value_name = "SUB_STATE")]
    fail_at: Option<String>,
    /// Lifetime of the access tokens Entra and IMDS hand out.
    #[arg(long, value_name = "SECONDS")]
    token_lifetime: Option<u64>,
    /// Storage accounts per page in ARM lists (exercises nextLink).
    #[arg(long, value_name = "N")]
    storage_page_size: Option<usize>,
    /// Retry-After (seconds) on long-running operation answers.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Multiply every build phase and operation duration (0.1 for fast tests, 10 for a slow demo).
    #[arg(long, value_name = "FACTOR")]
    time_scale: Option<f64>,
    /// A fault, as JSON (repeatable); see below.
    #[arg(long, value_name = "JSON")]
    fault: Vec<String>,
}

/// Applies the flags that override the scenario file.
fn apply_overrides(args: &Args, config: &mut Config) -> Result<()> {
    config.port = args.port;
    config.imds_http |= args.imds_http;
    if args.ca_out.is_some() {
        config.ca_out = args.ca_out.clone();
    }
    if args.request_log.is_some() {
        config.request_log = args.request_log.clone();
    }
    if let Some(sub_state) = &args.fail_at {
        config.fail_at = Some(
            serde_json::from_value(json!(sub_state))
                .with_context(|| format!("--fail-at {sub_state:?} is not a run sub-state"))?,
        );
    }
    if let Some(secs) = args.token_lifetime {
        config.token_lifetime = Duration::from_secs(secs);
    }
    if let Some(n) = args.storage_page_size {
        config.storage_page_size = n;
    }
    if let Some(secs) = args.retry_after {
        config.timing.retry_after_secs = secs;
    }
    if let Some(factor) = args.time_scale {
        let t = &mut config.timing;
        for d in [
            &mut t.lro,
            &mut t.queued,
            &mut t.building,
            &mut t.customizing,
            &mut t.optimizing,
            &mut t.validating,
            &mut t.distributing,
            &mut t.canceling,
        ] {
            *d = d.mul_f64(factor);
        }
    }
    for f in &args.fault {
        config
            .faults
            .push(serde_json::from_str(f).with_context(|| format!("--fault {f}"))?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut config: Config = match &args.config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => Config::default(),
    };
    apply_overrides(&args, &mut config)?;
    let ca = CertificateAuthority::generate()?;
    config.ca = Some(ca.clone());
    let azurite = if args.start_azurite {
        let https = args.azurite_https || args.azurite_oauth;
        let tls = if https {
            let (cert, key) = ca.issue_server_cert(&["127.0.0.1", "localhost"])?;
            Some(AzuriteTls::Pem { cert, key })
        } else {
            None
        };
        let a = Azurite::start(AzuriteOptions {
            tls,
            oauth_basic: args.azurite_oauth,
            accounts: config.azurite_accounts(),
        })?;
        config.use_azurite(&a);
        Some(a)
    } else {
        None
    };
    let emulator = Emulator::start(config).await?;
    let c = emulator.config();
    let sp = c.service_principals.first().cloned().unwrap_or_default();
    println!(
        "aib-emulator listening on {} (CA certificate: {})",
        emulator.base_url(),
        emulator.ca_pem_path().display()
    );
    let info = json!({
        "base_url": emulator.base_url().as_str(),
        "ca_pem": emulator.ca_pem_path(),
        "imds_http_url": emulator.imds_http_url().map(|u| u.to_string()),
        "oidc_request_uri": emulator.oidc_request_uri("00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b").as_str(),
        "tenant_id": sp.tenant_id,
        "client_id": sp.client_id,
        "client_secret": sp.client_secrets.first(),
        "subscription_id": c.subscriptions.first().map(|s| s.subscription_id.clone()),
        "resource_group": c.resource_groups.first().map(|g| g.name.clone()),
        "location": c.resource_groups.first().map(|g| g.location.clone()),
        "managed_identity": c.managed_identity,
        "service_connection_id": c.devops.service_connections.first().map(|x| x.id.clone()),
        "job_access_token": c.devops.job_access_tokens.first(),
        "storage_accounts": c.storage_accounts.iter().map(|a| json!({"name": a.name, "blob_endpoint": a.blob_endpoint, "key": a.key})).collect::<Vec<_>>(),
        "staging_storage_account": {"name": c.staging_storage.name, "blob_endpoint": c.staging_storage.blob_endpoint},
        "azurite": azurite.as_ref().map(|a| json!({"port": a.port(), "https": a.is_https(), "devstoreaccount1": a.blob_endpoint("devstoreaccount1").as_str()})),
        "swagger_validation": emulator.swagger_validation_enabled(),
    });
    println!("{info}");

    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    emulator.shutdown().await;
    drop(azurite);
    Ok(())
}
