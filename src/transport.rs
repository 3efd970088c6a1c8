//! The one HTTP client every Azure call goes through, built the way the agent's network is set
//! up: the system's trusted roots plus the agent's (`AGENT_CAINFO`) and `SSL_CERT_FILE`
//! certificates, and the agent's proxy (`AGENT_PROXYURL` with its credentials and bypass list)
//! or the usual `HTTPS_PROXY`/`NO_PROXY`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use azure_core::credentials::Secret;
use regex::Regex;
use url::Url;

use crate::agent::{Console, Environment};

/// Network settings read from the agent's variables.
#[derive(Debug, Default)]
pub struct TransportSettings {
    /// PEM files whose certificates are trusted in addition to the system's, with the variable
    /// that named each (for error messages).
    pub extra_roots: Vec<(&'static str, PathBuf)>,
    /// `AGENT_SKIPCERTVALIDATION`: the agent was configured to accept any certificate.
    pub skip_cert_validation: bool,
    pub proxy: Option<AgentProxy>,
}

/// The proxy the agent was configured with.
#[derive(Debug)]
pub struct AgentProxy {
    pub url: Url,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Regular expressions; a URL matching one goes direct.
    pub bypass: Vec<Regex>,
}

impl TransportSettings {
    pub fn from_env(env: &Environment) -> Result<TransportSettings> {
        let mut extra_roots = Vec::new();
        for variable in ["AGENT_CAINFO", "SSL_CERT_FILE"] {
            if let Some(path) = env.get(variable) {
                extra_roots.push((variable, PathBuf::from(path)));
            }
        }
        let proxy = match env.get("AGENT_PROXYURL") {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw.trim())
                    .with_context(|| format!("AGENT_PROXYURL is not a URL: '{raw}'"))?;
                let bypass = match env.get("AGENT_PROXYBYPASSLIST") {
                    None => Vec::new(),
                    Some(list) => parse_bypass_list(list)?,
                };
                Some(AgentProxy {
                    url,
                    username: env.get("AGENT_PROXYUSERNAME").map(str::to_owned),
                    password: env
                        .get("AGENT_PROXYPASSWORD")
                        .map(|p| Secret::new(p.to_owned())),
                    bypass,
                })
            }
        };
        Ok(TransportSettings {
            extra_roots,
            skip_cert_validation: env.flag("AGENT_SKIPCERTVALIDATION"),
            proxy,
        })
    }
}

/// `AGENT_PROXYBYPASSLIST` is a JSON array of regular expressions (some agents hand over one
/// expression per line instead; accept both).
fn parse_bypass_list(list: &str) -> Result<Vec<Regex>> {
    let patterns: Vec<String> = match serde_json::from_str::<Vec<String>>(list) {
        Ok(patterns) => patterns,
        Err(_) => list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    patterns
        .iter()
        .map(|p| {
            Regex::new(&format!("(?i){p}"))
                .with_context(|| format!("AGENT_PROXYBYPASSLIST has an invalid expression '{p}'"))
        })
        .collect()
}

/// Builds the client. Secrets in the settings are announced to `console` first.
pub fn build_client(settings: &TransportSettings, console: &Console) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("aib-task/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // A stalled connection must end in an error the retry logic sees, not hang a build.
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(60));

    let mut roots = Vec::new();
    for (variable, path) in &settings.extra_roots {
        let pem = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the certificates named by {variable} ({})",
                path.display()
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "{variable} ({}) holds no valid PEM certificate",
                path.display()
            )
        })?;
        if certs.is_empty() {
            anyhow::bail!("{variable} ({}) holds no PEM certificate", path.display());
        }
        roots.extend(certs);
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    if settings.skip_cert_validation {
        console.warning(
            "AGENT_SKIPCERTVALIDATION is set: server certificates are not verified. Trust the proxy's certificate through AGENT_CAINFO instead.",
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }

    if let Some(proxy) = &settings.proxy {
        if let Some(password) = &proxy.password {
            console.set_secret(password.secret());
        }
        let target = proxy.url.clone();
        let bypass = proxy.bypass.clone();
        let mut agent_proxy = reqwest::Proxy::custom(move |url| {
            let s = url.as_str();
            (!bypass.iter().any(|re| re.is_match(s))).then(|| target.clone())
        });
        if let Some(user) = &proxy.username {
            let password = proxy.password.as_ref().map(Secret::secret).unwrap_or("");
            agent_proxy = agent_proxy.basic_auth(user, password);
        }
        agent_proxy = agent_proxy.no_proxy(reqwest::NoProxy::from_env());
        builder = builder.proxy(agent_proxy);
    }
    builder.build().context("cannot set up the HTTPS client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_agent_proxy_and_trust_settings() {
        let env = Environment::from_pairs([
            ("AGENT_PROXYURL", "http://proxy.corp:8080"),
            ("AGENT_PROXYUSERNAME", "svc"),
            ("AGENT_PROXYPASSWORD", "pw"),
            (
                "AGENT_PROXYBYPASSLIST",
                r#"["\\.internal\\.corp", "localhost"]"#,
            ),
            ("AGENT_CAINFO", "/etc/agent/ca.pem"),
            ("SSL_CERT_FILE", "/etc/ssl/extra.pem"),
            ("AGENT_SKIPCERTVALIDATION", "false"),
        ]);
        let settings = TransportSettings::from_env(&env).unwrap();
        let proxy = settings.proxy.unwrap();
        assert_eq!(proxy.url.as_str(), "http://proxy.corp:8080/");
        assert_eq!(proxy.username.as_deref(), Some("svc"));
        assert!(proxy.bypass[0].is_match("https://build.INTERNAL.corp/x"));
        assert!(proxy.bypass[1].is_match("http://localhost:1234/"));
        assert_eq!(settings.extra_roots.len(), 2);
        assert!(!settings.skip_cert_validation);
    }

    #[test]
    fn bypass_list_may_be_lines() {
        let list = parse_bypass_list("a\\.b\n\n c ").unwrap();
        assert_eq!(list.len(), 2);
        assert!(parse_bypass_list(r#"["(unclosed"]"#).is_err());
    }

    #[test]
    fn unreadable_trust_file_names_the_variable() {
        let settings = TransportSettings {
            extra_roots: vec![("AGENT_CAINFO", PathBuf::from("/nonexistent/ca.pem"))],
            ..Default::default()
        };
        let console = Console::with_writer(Box::new(std::io::sink()), false);
        let err = build_client(&settings, &console).unwrap_err();
        assert!(format!("{err:#}").contains("AGENT_CAINFO"), "{err:#}");
    }
}
