//! Signing in outside a pipeline, the way azure/login and the Azure SDKs do: on GitHub Actions
//! with `id-token: write`, the job's OIDC token exchanged for the app `clientId` names; else a
//! service principal from environment variables (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` with `AZURE_CLIENT_SECRET`,
//! `AZURE_CLIENT_CERTIFICATE_PATH` or `AZURE_FEDERATED_TOKEN_FILE`; `AZURE_AUTHORITY_HOST` for
//! another cloud), else the account the Azure CLI is logged in with
//! (`azure_identity::AzureCliCredential`). The subscription comes from `--subscription` /
//! `AZURE_SUBSCRIPTION_ID`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use azure_core::credentials::Secret;
use azure_identity::{AzureCliCredential, AzureCliCredentialOptions};

use super::certificate::ClientCertificate;
use super::entra::Proof;
use super::federation::{FederatedToken, GitHubOidcRequest};
use super::retry::sign_in_policy;
use super::{Acquirer, LocalOptions, SignedIn, TokenSource, client_credentials};
use crate::agent::{Console, Environment};

pub fn sign_in(
    env: &Environment,
    options: &LocalOptions,
    http: reqwest::Client,
    console: &Arc<Console>,
) -> Result<SignedIn> {
    let cloud = super::cloud::local_in(
        env,
        options.environment.as_deref(),
        options.resource_manager_url.as_deref(),
    )?;
    let subscription_id = options
        .subscription
        .clone()
        .or_else(|| env.get("AZURE_SUBSCRIPTION_ID").map(str::to_owned))
        .map(|s| s.trim().to_owned());
    let given = |input: &Option<String>| {
        input
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let tenant = given(&options.tenant_id)
        .or_else(|| env.get("AZURE_TENANT_ID").map(|v| v.trim().to_owned()));
    let client = given(&options.client_id)
        .or_else(|| env.get("AZURE_CLIENT_ID").map(|v| v.trim().to_owned()));
    let (tenant, client) = (tenant.as_deref(), client.as_deref());

    // GitHub's OIDC token first (azure/login's order): the job offers one only when the workflow
    // grants `id-token: write`, and it is only of use for an app (client id) to exchange it for.
    let github = match client {
        Some(_) => {
            GitHubOidcRequest::from_env(env, http.clone(), Arc::clone(console), sign_in_policy())
                .transpose()?
        }
        None => None,
    };
    let proof = if let Some(request) = github {
        Some((
            Proof::Federated(FederatedToken::GitHub(request)),
            "GitHub's OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL)",
        ))
    } else if let Some(secret) = env.get("AZURE_CLIENT_SECRET") {
        console.set_secret(secret);
        Some((
            Proof::Secret(Secret::new(secret.to_owned())),
            "AZURE_CLIENT_SECRET",
        ))
    } else if let Some(path) = env.get("AZURE_CLIENT_CERTIFICATE_PATH") {
        Some((
            Proof::Certificate(read_certificate(env, path, console)?),
            "AZURE_CLIENT_CERTIFICATE_PATH",
        ))
    } else {
        env.get("AZURE_FEDERATED_TOKEN_FILE").map(|path| {
            (
                Proof::Federated(FederatedToken::File(PathBuf::from(path))),
                "AZURE_FEDERATED_TOKEN_FILE",
            )
        })
    };

    let Some((proof, variable)) = proof else {
        let cli = AzureCliCredential::new(Some(AzureCliCredentialOptions {
            subscription: subscription_id.clone(),
            tenant_id: tenant.map(str::to_owned),
            ..Default::default()
        }))
        .map_err(|e| anyhow!(super::error_chain(&e)))
        .context("cannot use the Azure CLI's login")?;
        let tokens = TokenSource::new(
            Acquirer::AzureCli(cli),
            "the account the Azure CLI is logged in with".to_owned(),
            Arc::clone(console),
        );
        return Ok(SignedIn {
            tokens: Arc::new(tokens),
            cloud,
            subscription_id,
            subscription_name: None,
            source: "the Azure CLI (no service connection, and no AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE)".to_owned(),
        });
    };
    let (Some(tenant), Some(client)) = (tenant, client) else {
        let missing: Vec<&str> = [
            ("input 'tenantId' (or AZURE_TENANT_ID)", tenant),
            ("input 'clientId' (or AZURE_CLIENT_ID)", client),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
        bail!(
            "{variable} is set, but {} is not: a service principal needs its tenant and client (application) id too",
            missing.join(" and ")
        );
    };
    let identity = format!(
        "service principal ({}) '{client}' in tenant '{tenant}'",
        proof.describe()
    );
    let credentials = client_credentials(
        &cloud,
        tenant,
        client,
        proof,
        http,
        Arc::clone(console),
        sign_in_policy(),
    )
    .with_context(|| format!("cannot set up sign-in for {identity}"))?;
    Ok(SignedIn {
        tokens: Arc::new(TokenSource::new(
            Acquirer::ClientCredentials(credentials),
            identity,
            Arc::clone(console),
        )),
        cloud,
        subscription_id,
        subscription_name: None,
        source: if variable.starts_with("GitHub") {
            variable.to_owned()
        } else {
            format!("environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID, {variable})")
        },
    })
}

/// `AZURE_CLIENT_CERTIFICATE_PATH`: an unencrypted PEM with the certificate and its key.
fn read_certificate(env: &Environment, path: &str, console: &Console) -> Result<ClientCertificate> {
    if env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
        bail!(
            "AZURE_CLIENT_CERTIFICATE_PASSWORD is set: password-protected (PFX) certificates are not supported; convert it to an unencrypted PEM (openssl pkcs12 -in cert.pfx -out cert.pem -nodes) and point AZURE_CLIENT_CERTIFICATE_PATH at that"
        );
    }
    let bytes = std::fs::read(path).with_context(|| {
        format!("cannot read the certificate {path} named by AZURE_CLIENT_CERTIFICATE_PATH")
    })?;
    let pem = String::from_utf8(bytes).map_err(|_| {
        anyhow!(
            "the certificate {path} (AZURE_CLIENT_CERTIFICATE_PATH) is not PEM text; a PFX must be converted to PEM first"
        )
    })?;
    console.set_secret(&pem);
    ClientCertificate::from_pem(
        &pem,
        &format!("the certificate {path} (AZURE_CLIENT_CERTIFICATE_PATH)"),
    )
}
