//! `aib-emulator`: starts the emulator (and optionally Azurite wired to it) with one command, for
//! the demo and manual testing. Prints one human line and one JSON line describing the endpoints
//! and test identities, then serves until SIGINT/SIGTERM.

use std::path::PathBuf;

use aib_emulator::{
    Config, Emulator,
    azurite::{Azurite, AzuriteOptions, AzuriteTls},
    ca::CertificateAuthority,
};
use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
#[command(
    version,
    about = "Local Azure emulator (Entra ID, OIDC, IMDS, ARM, Image Builder) for aib-task's tests"
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
    config.port = args.port;
    config.imds_http |= args.imds_http;
    if args.ca_out.is_some() {
        config.ca_out = args.ca_out.clone();
    }
    if args.request_log.is_some() {
        config.request_log = args.request_log.clone();
    }
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
