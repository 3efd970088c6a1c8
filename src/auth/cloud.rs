//! Which cloud to sign in to: the connection's endpoints with the per-environment fallbacks of
//! `agent::endpoint`, completed for Azure Stack (or any connection without an authority) from
//! the resource manager's metadata endpoint; and outside a pipeline, from `AZURE_AUTHORITY_HOST`
//! and `AZURE_RESOURCE_MANAGER_URL`.

use anyhow::{Context, Result, anyhow, bail};
use url::Url;

use crate::agent::endpoint::AzureEnvironment;
use crate::agent::{Cloud, Environment, ServiceConnection};

/// The Azure Stack metadata version every Azure Stack tool asks for.
const METADATA_API_VERSION: &str = "2015-01-01";

/// The connection's cloud, with what it lacks discovered from
/// `GET {ARM}metadata/endpoints?api-version=2015-01-01` (`authentication.loginEndpoint` and
/// `authentication.audiences[0]`).
pub async fn resolve(connection: &ServiceConnection, http: &reqwest::Client) -> Result<Cloud> {
    let mut cloud = connection.cloud()?;
    let stack = connection.environment == AzureEnvironment::AzureStack;
    let needs_audience = stack && connection.arm_resource_id.is_none();
    if cloud.authority.is_some() && !needs_audience {
        return Ok(cloud);
    }
    let metadata = discover(&cloud.resource_manager, http)
        .await
        .with_context(|| {
            format!(
                "the service connection '{}' gives no Entra ID authority (activeDirectoryAuthority) and it could not be discovered",
                connection.id
            )
        })?;
    if cloud.authority.is_none() {
        cloud.authority = Some(metadata.login_endpoint);
    }
    if needs_audience && let Some(audience) = metadata.audience {
        cloud.arm_audience = audience;
    }
    Ok(cloud)
}

/// What the metadata endpoint says.
#[derive(Debug, PartialEq, Eq)]
pub struct Metadata {
    pub login_endpoint: Url,
    pub audience: Option<String>,
}

pub async fn discover(resource_manager: &Url, http: &reqwest::Client) -> Result<Metadata> {
    let mut url = resource_manager
        .join("metadata/endpoints")
        .context("cannot form the metadata URL")?;
    url.query_pairs_mut()
        .append_pair("api-version", METADATA_API_VERSION);
    let response = http
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| anyhow!(super::error_chain(&e)))
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
    parse_metadata(&body).with_context(|| format!("{url} answered with an unexpected body"))
}

pub fn parse_metadata(body: &[u8]) -> Result<Metadata> {
    let json: serde_json::Value = serde_json::from_slice(body)?;
    let login = json["authentication"]["loginEndpoint"]
        .as_str()
        .ok_or_else(|| anyhow!("no authentication.loginEndpoint"))?;
    let mut login_endpoint =
        Url::parse(login).with_context(|| format!("loginEndpoint '{login}' is not a URL"))?;
    if !login_endpoint.path().ends_with('/') {
        let path = format!("{}/", login_endpoint.path());
        login_endpoint.set_path(&path);
    }
    Ok(Metadata {
        login_endpoint,
        audience: json["authentication"]["audiences"][0]
            .as_str()
            .map(str::to_owned),
    })
}

/// Public, China and US Government clouds: `(login host, resource manager)`.
const KNOWN_CLOUDS: [(&str, &str); 3] = [
    ("login.microsoftonline.com", "https://management.azure.com/"),
    (
        "login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn/",
    ),
    (
        "login.microsoftonline.us",
        "https://management.usgovcloudapi.net/",
    ),
];

/// Outside a pipeline: `AZURE_AUTHORITY_HOST` (default the public cloud) and the resource
/// manager of that cloud, or `resource_manager` when given (`--resource-manager-url` /
/// `AZURE_RESOURCE_MANAGER_URL`, needed for other clouds).
pub fn local(env: &Environment, resource_manager: Option<&str>) -> Result<Cloud> {
    local_in(env, None, resource_manager)
}

/// The clouds the `environment` input names, as azure/login names them: `(name, login host)`.
pub const ENVIRONMENTS: [(&str, &str); 3] = [
    ("AzureCloud", "https://login.microsoftonline.com/"),
    ("AzureUSGovernment", "https://login.microsoftonline.us/"),
    ("AzureChinaCloud", "https://login.chinacloudapi.cn/"),
];

/// Like [`local`], with the cloud named by the `environment` input (default `AzureCloud`);
/// `AZURE_AUTHORITY_HOST` and `resource_manager` still win over it.
pub fn local_in(
    env: &Environment,
    environment: Option<&str>,
    resource_manager: Option<&str>,
) -> Result<Cloud> {
    let named = match environment.map(str::trim).filter(|e| !e.is_empty()) {
        None => ENVIRONMENTS[0].1,
        Some(name) => ENVIRONMENTS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, login)| *login)
            .ok_or_else(|| {
                let names: Vec<&str> = ENVIRONMENTS.iter().map(|(n, _)| *n).collect();
                anyhow!(
                    "input 'environment': expected one of {}, got '{name}' (other clouds: set AZURE_AUTHORITY_HOST and AZURE_RESOURCE_MANAGER_URL)",
                    names.join(", ")
                )
            })?,
    };
    let authority_text = env.get("AZURE_AUTHORITY_HOST").unwrap_or(named).trim();
    let mut authority = Url::parse(authority_text)
        .with_context(|| format!("AZURE_AUTHORITY_HOST is not a URL: '{authority_text}'"))?;
    if !authority.path().ends_with('/') {
        let path = format!("{}/", authority.path());
        authority.set_path(&path);
    }
    let arm_text = match resource_manager.map(str::trim).filter(|s| !s.is_empty()) {
        Some(url) => url.to_owned(),
        None => KNOWN_CLOUDS
            .iter()
            .find(|(host, _)| authority.host_str() == Some(host))
            .map(|(_, arm)| arm.to_string())
            .ok_or_else(|| {
                anyhow!(
                    "AZURE_AUTHORITY_HOST is {authority}, whose resource manager is not known: give it with --resource-manager-url (or AZURE_RESOURCE_MANAGER_URL)"
                )
            })?,
    };
    let mut resource_manager = Url::parse(&arm_text)
        .with_context(|| format!("the resource manager URL '{arm_text}' is not a URL"))?;
    if !resource_manager.path().ends_with('/') {
        let path = format!("{}/", resource_manager.path());
        resource_manager.set_path(&path);
    }
    Ok(Cloud {
        arm_audience: resource_manager.as_str().to_owned(),
        resource_manager,
        authority: Some(authority),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_gives_login_endpoint_and_audience() {
        let m = parse_metadata(
            br#"{"authentication":{"loginEndpoint":"https://adfs.local.azurestack.external/adfs","audiences":["https://management.adfs.azurestack.local/abc"]}}"#,
        )
        .unwrap();
        assert_eq!(
            m.login_endpoint.as_str(),
            "https://adfs.local.azurestack.external/adfs/"
        );
        assert_eq!(
            m.audience.as_deref(),
            Some("https://management.adfs.azurestack.local/abc")
        );
        assert!(parse_metadata(br#"{"authentication":{}}"#).is_err());
    }

    #[test]
    fn local_cloud_follows_the_authority_host() {
        let cloud = local(&Environment::default(), None).unwrap();
        assert_eq!(
            cloud.resource_manager.as_str(),
            "https://management.azure.com/"
        );
        let env =
            Environment::from_pairs([("AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn")]);
        let cloud = local(&env, None).unwrap();
        assert_eq!(
            cloud.resource_manager.as_str(),
            "https://management.chinacloudapi.cn/"
        );
        assert_eq!(
            cloud.authority.unwrap().as_str(),
            "https://login.chinacloudapi.cn/"
        );
        let env =
            Environment::from_pairs([("AZURE_AUTHORITY_HOST", "https://login.example.test/")]);
        let err = local(&env, None).unwrap_err().to_string();
        assert!(err.contains("--resource-manager-url"), "{err}");
        let cloud = local(&env, Some("https://arm.example.test")).unwrap();
        assert_eq!(cloud.arm_scope(), "https://arm.example.test//.default");
    }

    #[test]
    fn the_environment_input_names_the_cloud_unless_overridden() {
        let none = Environment::default();
        let gov = local_in(&none, Some("azureusgovernment"), None).unwrap();
        assert_eq!(
            gov.resource_manager.as_str(),
            "https://management.usgovcloudapi.net/"
        );
        assert_eq!(
            gov.authority.unwrap().as_str(),
            "https://login.microsoftonline.us/"
        );
        let china = local_in(&none, Some("AzureChinaCloud"), None).unwrap();
        assert_eq!(
            china.resource_manager.as_str(),
            "https://management.chinacloudapi.cn/"
        );
        let err = local_in(&none, Some("AzureGermanCloud"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'environment'") && err.contains("AzureUSGovernment"),
            "{err}"
        );
        let env =
            Environment::from_pairs([("AZURE_AUTHORITY_HOST", "https://login.example.test/")]);
        let cloud = local_in(
            &env,
            Some("AzureUSGovernment"),
            Some("https://arm.example.test/"),
        )
        .unwrap();
        assert_eq!(
            cloud.authority.unwrap().as_str(),
            "https://login.example.test/"
        );
        assert_eq!(cloud.resource_manager.as_str(), "https://arm.example.test/");
    }
}
