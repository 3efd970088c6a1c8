//! The AzureRM service connection: the agent's `ENDPOINT_*` variables for one connection id read
//! into a typed [`ServiceConnection`], and the cloud it lives in ([`Cloud`]).
//!
//! Pure parsing over an [`Environment`] snapshot; signing in with it is `crate::auth`'s job.

use azure_core::credentials::Secret;
use url::Url;

use super::environment::Environment;

/// How the connection signs in.
#[derive(Debug)]
pub enum Credentials {
    /// Service principal with a client secret (`authenticationType` `spnKey` or unset).
    ClientSecret { secret: Secret },
    /// Service principal with a certificate: one PEM holding the certificate and its private key.
    ClientCertificate { pem: Secret },
    /// Workload identity federation: an Azure DevOps OIDC token exchanged for an Entra token.
    WorkloadIdentityFederation,
    /// The agent machine's managed identity, a user-assigned one when a client id is given.
    ManagedIdentity { client_id: Option<String> },
}

impl Credentials {
    pub fn describe(&self) -> &'static str {
        match self {
            Credentials::ClientSecret { .. } => "service principal (client secret)",
            Credentials::ClientCertificate { .. } => "service principal (certificate)",
            Credentials::WorkloadIdentityFederation => "workload identity federation",
            Credentials::ManagedIdentity { .. } => "managed identity",
        }
    }

    /// The secrets to announce to the agent before anything could print them.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::ClientSecret { secret } => vec![secret.secret()],
            Credentials::ClientCertificate { pem } => vec![pem.secret()],
            _ => Vec::new(),
        }
    }
}

/// The Azure environment a connection names (`ENDPOINT_DATA_<id>_ENVIRONMENT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureEnvironment {
    AzureCloud,
    AzureChinaCloud,
    AzureUSGovernment,
    AzureGermanCloud,
    AzureStack,
    Other(String),
}

impl AzureEnvironment {
    pub fn parse(value: Option<&str>) -> AzureEnvironment {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return AzureEnvironment::AzureCloud;
        };
        match value.to_ascii_lowercase().as_str() {
            "azurecloud" | "azurepubliccloud" => AzureEnvironment::AzureCloud,
            "azurechinacloud" => AzureEnvironment::AzureChinaCloud,
            "azureusgovernment" | "azureusgovernmentcloud" => AzureEnvironment::AzureUSGovernment,
            "azuregermancloud" => AzureEnvironment::AzureGermanCloud,
            "azurestack" => AzureEnvironment::AzureStack,
            _ => AzureEnvironment::Other(value.to_owned()),
        }
    }

    /// Well-known `(authority, resource manager)` for the public sovereign clouds.
    fn defaults(&self) -> Option<(&'static str, &'static str)> {
        match self {
            AzureEnvironment::AzureCloud => Some((
                "https://login.microsoftonline.com/",
                "https://management.azure.com/",
            )),
            AzureEnvironment::AzureChinaCloud => Some((
                "https://login.chinacloudapi.cn/",
                "https://management.chinacloudapi.cn/",
            )),
            AzureEnvironment::AzureUSGovernment => Some((
                "https://login.microsoftonline.us/",
                "https://management.usgovcloudapi.net/",
            )),
            AzureEnvironment::AzureGermanCloud => Some((
                "https://login.microsoftonline.de/",
                "https://management.microsoftazure.de/",
            )),
            AzureEnvironment::AzureStack | AzureEnvironment::Other(_) => None,
        }
    }
}

/// An AzureRM service connection as the agent describes it.
#[derive(Debug)]
pub struct ServiceConnection {
    /// The connection id exactly as the `ibSubscription` input gave it.
    pub id: String,
    pub credentials: Credentials,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub subscription_id: Option<String>,
    pub subscription_name: Option<String>,
    pub environment: AzureEnvironment,
    pub scope_level: Option<String>,
    /// `ENDPOINT_URL_<id>`: the resource manager URL.
    pub url: Option<Url>,
    /// `ACTIVEDIRECTORYAUTHORITY`, or the older `ENVIRONMENTAUTHORITYURL`.
    pub authority: Option<Url>,
    /// `RESOURCEMANAGERURL`, some connections' copy of the URL.
    pub resource_manager_url: Option<Url>,
    /// `ACTIVEDIRECTORYSERVICEENDPOINTRESOURCEID`: the audience ARM tokens are issued for.
    pub arm_resource_id: Option<String>,
}

/// What is wrong with a connection, naming the variable a user or admin can check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error(
        "the service connection '{id}' given by input '{input}' was not found: the agent sets ENDPOINT_URL_{id} and ENDPOINT_AUTH_SCHEME_{id} for a connection the pipeline may use. Check that the input names an Azure Resource Manager service connection (its name or id) and that the pipeline is authorized to use it"
    )]
    NotFound { id: String, input: &'static str },
    #[error(
        "the service connection '{id}' has no {what} (variable {variable}); edit the connection and set it"
    )]
    MissingParameter {
        id: String,
        what: &'static str,
        variable: String,
    },
    #[error(
        "the service connection '{id}' uses authentication scheme '{scheme}', which aib-task cannot use; supported: ServicePrincipal (secret or certificate), WorkloadIdentityFederation, ManagedServiceIdentity"
    )]
    UnsupportedScheme { id: String, scheme: String },
    #[error(
        "the service connection '{id}' has authentication type '{kind}'; expected spnKey or spnCertificate"
    )]
    UnsupportedAuthenticationType { id: String, kind: String },
    #[error("the service connection '{id}' has an invalid URL in {variable}: '{value}' ({reason})")]
    InvalidUrl {
        id: String,
        variable: String,
        value: String,
        reason: String,
    },
    #[error(
        "the service connection '{id}' is for environment '{environment}', whose endpoints it does not give: set ENDPOINT_URL_{id} and its activeDirectoryAuthority"
    )]
    UnknownCloud { id: String, environment: String },
}

/// Reads a connection's variables. Names are looked up verbatim first, then case-insensitively,
/// because the agent keeps the id's case from the input while some hosts upper-case it.
struct ConnectionVariables<'a> {
    env: &'a Environment,
    id: &'a str,
    auth_json: Option<serde_json::Value>,
}

impl<'a> ConnectionVariables<'a> {
    fn new(env: &'a Environment, id: &'a str) -> Self {
        let auth_json = env
            .get_ignore_case(&format!("ENDPOINT_AUTH_{id}"))
            .and_then(|raw| serde_json::from_str(raw).ok());
        ConnectionVariables { env, id, auth_json }
    }

    fn exists(&self) -> bool {
        self.url().is_some() || self.scheme().is_some() || self.auth_json.is_some()
    }

    fn url(&self) -> Option<&'a str> {
        self.env
            .get_ignore_case(&format!("ENDPOINT_URL_{}", self.id))
    }

    fn scheme(&self) -> Option<String> {
        self.env
            .get_ignore_case(&format!("ENDPOINT_AUTH_SCHEME_{}", self.id))
            .map(str::to_owned)
            .or_else(|| {
                self.auth_json.as_ref()?["scheme"]
                    .as_str()
                    .map(str::to_owned)
            })
    }

    fn parameter_variable(&self, key: &str) -> String {
        format!("ENDPOINT_AUTH_PARAMETER_{}_{key}", self.id)
    }

    /// An auth parameter, falling back to the `ENDPOINT_AUTH_<id>` JSON.
    fn parameter(&self, key: &str) -> Option<String> {
        if let Some(v) = self.env.get_ignore_case(&self.parameter_variable(key)) {
            return Some(v.to_owned());
        }
        let params = self.auth_json.as_ref()?.get("parameters")?.as_object()?;
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    fn data(&self, key: &str) -> Option<String> {
        self.env
            .get_ignore_case(&format!("ENDPOINT_DATA_{}_{key}", self.id))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, key: &str, what: &'static str) -> Result<String, EndpointError> {
        self.parameter(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| EndpointError::MissingParameter {
                id: self.id.to_owned(),
                what,
                variable: self.parameter_variable(key),
            })
    }

    fn url_value(
        &self,
        variable: String,
        value: Option<String>,
    ) -> Result<Option<Url>, EndpointError> {
        let Some(value) = value else { return Ok(None) };
        let parsed = Url::parse(value.trim()).map_err(|e| EndpointError::InvalidUrl {
            id: self.id.to_owned(),
            variable: variable.clone(),
            value: value.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(EndpointError::InvalidUrl {
                id: self.id.to_owned(),
                variable,
                value,
                reason: "expected an https URL".into(),
            });
        }
        Ok(Some(with_trailing_slash(parsed)))
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

impl ServiceConnection {
    /// Reads connection `id` (the `ibSubscription` input's value) from the agent's variables.
    pub fn from_env(
        env: &Environment,
        id: &str,
        input: &'static str,
    ) -> Result<Self, EndpointError> {
        let id = id.trim();
        let vars = ConnectionVariables::new(env, id);
        if !vars.exists() {
            return Err(EndpointError::NotFound {
                id: id.to_owned(),
                input,
            });
        }
        let scheme = vars.scheme().unwrap_or_default();
        let credentials = match scheme.trim().to_ascii_lowercase().as_str() {
            "" | "serviceprincipal" => {
                let kind = vars.parameter("AUTHENTICATIONTYPE").unwrap_or_default();
                match kind.trim().to_ascii_lowercase().as_str() {
                    "" | "spnkey" => Credentials::ClientSecret {
                        secret: Secret::new(vars.required("SERVICEPRINCIPALKEY", "client secret")?),
                    },
                    "spncertificate" => Credentials::ClientCertificate {
                        pem: Secret::new(
                            vars.required("SERVICEPRINCIPALCERTIFICATE", "certificate (PEM)")?,
                        ),
                    },
                    _ => {
                        return Err(EndpointError::UnsupportedAuthenticationType {
                            id: id.to_owned(),
                            kind,
                        });
                    }
                }
            }
            "workloadidentityfederation" => Credentials::WorkloadIdentityFederation,
            "managedserviceidentity" => Credentials::ManagedIdentity {
                client_id: vars.data("MSICLIENTID"),
            },
            _ => {
                return Err(EndpointError::UnsupportedScheme {
                    id: id.to_owned(),
                    scheme,
                });
            }
        };
        let needs_principal = !matches!(credentials, Credentials::ManagedIdentity { .. });
        let (tenant_id, client_id) = if needs_principal {
            (
                Some(vars.required("TENANTID", "tenant id")?),
                Some(vars.required("SERVICEPRINCIPALID", "service principal (client) id")?),
            )
        } else {
            (vars.parameter("TENANTID"), None)
        };
        let data_var = |key: &str| format!("ENDPOINT_DATA_{id}_{key}");
        let authority_key = if vars.data("ACTIVEDIRECTORYAUTHORITY").is_some() {
            "ACTIVEDIRECTORYAUTHORITY"
        } else {
            "ENVIRONMENTAUTHORITYURL"
        };
        Ok(ServiceConnection {
            id: id.to_owned(),
            tenant_id,
            client_id,
            subscription_id: vars.data("SUBSCRIPTIONID"),
            subscription_name: vars.data("SUBSCRIPTIONNAME"),
            environment: AzureEnvironment::parse(vars.data("ENVIRONMENT").as_deref()),
            scope_level: vars.data("SCOPELEVEL"),
            url: vars.url_value(format!("ENDPOINT_URL_{id}"), vars.url().map(str::to_owned))?,
            authority: vars.url_value(data_var(authority_key), vars.data(authority_key))?,
            resource_manager_url: vars.url_value(
                data_var("RESOURCEMANAGERURL"),
                vars.data("RESOURCEMANAGERURL"),
            )?,
            arm_resource_id: vars.data("ACTIVEDIRECTORYSERVICEENDPOINTRESOURCEID"),
            credentials,
        })
    }

    /// The endpoints to use: the connection's own, else the environment's well-known ones.
    ///
    /// Azure Stack gives no well-known endpoints; its authority comes from the ARM metadata
    /// endpoint when the connection lacks it, so this returns `None` for the authority there.
    pub fn cloud(&self) -> Result<Cloud, EndpointError> {
        let defaults = self.environment.defaults();
        let resource_manager = match (&self.url, &self.resource_manager_url, defaults) {
            (Some(url), _, _) | (None, Some(url), _) => url.clone(),
            (None, None, Some((_, arm))) => Url::parse(arm).expect("well-known URL"),
            (None, None, None) => {
                return Err(EndpointError::UnknownCloud {
                    id: self.id.clone(),
                    environment: format!("{:?}", self.environment),
                });
            }
        };
        let authority = self
            .authority
            .clone()
            .or_else(|| defaults.map(|(login, _)| Url::parse(login).expect("well-known URL")));
        let arm_audience = self
            .arm_resource_id
            .clone()
            .unwrap_or_else(|| resource_manager.as_str().to_owned());
        Ok(Cloud {
            resource_manager,
            authority,
            arm_audience,
        })
    }
}

/// Where a connection's tokens come from and what they are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloud {
    pub resource_manager: Url,
    /// The Entra ID (or ADFS) authority; `None` when it must be discovered (Azure Stack).
    pub authority: Option<Url>,
    /// The resource ARM tokens are issued for.
    pub arm_audience: String,
}

impl Cloud {
    /// The OAuth scope for ARM, formed as MSAL forms it from a resource: a resource ending in `/`
    /// keeps it, so `https://management.core.windows.net/` becomes `…windows.net//.default`.
    pub fn arm_scope(&self) -> String {
        scope_for(&self.arm_audience)
    }

    /// True for an ADFS authority (Azure Stack disconnected), which takes no tenant segment.
    pub fn is_adfs(&self) -> bool {
        self.authority.as_ref().is_some_and(|a| {
            a.path()
                .trim_end_matches('/')
                .to_ascii_lowercase()
                .ends_with("/adfs")
        })
    }
}

/// The `.default` scope for a resource (see [`Cloud::arm_scope`]).
pub fn scope_for(resource: &str) -> String {
    format!("{resource}/.default")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7f3c1c62-0b5e-4d0b-9a51-2a7c1f0e3b11";

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.replace("{id}", ID), v.to_string())),
        )
    }

    fn spn_base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ENDPOINT_URL_{id}", "https://management.azure.com/"),
            ("ENDPOINT_AUTH_SCHEME_{id}", "ServicePrincipal"),
            (
                "ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALID",
                "client-1",
            ),
            ("ENDPOINT_AUTH_PARAMETER_{id}_TENANTID", "tenant-1"),
            ("ENDPOINT_DATA_{id}_SUBSCRIPTIONID", "sub-1"),
            ("ENDPOINT_DATA_{id}_SUBSCRIPTIONNAME", "My Sub"),
            ("ENDPOINT_DATA_{id}_ENVIRONMENT", "AzureCloud"),
            ("ENDPOINT_DATA_{id}_SCOPELEVEL", "Subscription"),
        ]
    }

    #[test]
    fn service_principal_with_secret() {
        let mut vars = spn_base();
        vars.push(("ENDPOINT_AUTH_PARAMETER_{id}_AUTHENTICATIONTYPE", "spnKey"));
        vars.push(("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "s3cret"));
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        match &conn.credentials {
            Credentials::ClientSecret { secret } => assert_eq!(secret.secret(), "s3cret"),
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.credentials.secrets(), ["s3cret"]);
        assert_eq!(conn.tenant_id.as_deref(), Some("tenant-1"));
        assert_eq!(conn.client_id.as_deref(), Some("client-1"));
        assert_eq!(conn.subscription_id.as_deref(), Some("sub-1"));
        assert_eq!(conn.subscription_name.as_deref(), Some("My Sub"));
        assert_eq!(conn.scope_level.as_deref(), Some("Subscription"));
        let cloud = conn.cloud().unwrap();
        assert_eq!(
            cloud.resource_manager.as_str(),
            "https://management.azure.com/"
        );
        assert_eq!(
            cloud.authority.as_ref().unwrap().as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(cloud.arm_scope(), "https://management.azure.com//.default");
        assert!(
            !format!("{conn:?}").contains("s3cret"),
            "Debug must not print secrets"
        );
    }

    #[test]
    fn missing_scheme_and_type_mean_service_principal_secret() {
        let vars = vec![
            ("ENDPOINT_URL_{id}", "https://management.azure.com"),
            ("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALID", "c"),
            ("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "k"),
            ("ENDPOINT_AUTH_PARAMETER_{id}_TENANTID", "t"),
        ];
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert!(matches!(conn.credentials, Credentials::ClientSecret { .. }));
        assert_eq!(conn.url.unwrap().as_str(), "https://management.azure.com/");
    }

    #[test]
    fn service_principal_with_certificate() {
        let mut vars = spn_base();
        vars.push((
            "ENDPOINT_AUTH_PARAMETER_{id}_AUTHENTICATIONTYPE",
            "spnCertificate",
        ));
        vars.push((
            "ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALCERTIFICATE",
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
        ));
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert!(matches!(
            conn.credentials,
            Credentials::ClientCertificate { .. }
        ));
        assert_eq!(
            conn.credentials.describe(),
            "service principal (certificate)"
        );
    }

    #[test]
    fn workload_identity_federation() {
        let mut vars = spn_base();
        vars[1] = ("ENDPOINT_AUTH_SCHEME_{id}", "WorkloadIdentityFederation");
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert!(matches!(
            conn.credentials,
            Credentials::WorkloadIdentityFederation
        ));
        assert!(conn.credentials.secrets().is_empty());
    }

    #[test]
    fn managed_identity_needs_no_principal() {
        let vars = vec![
            ("ENDPOINT_URL_{id}", "https://management.azure.com/"),
            ("ENDPOINT_AUTH_SCHEME_{id}", "ManagedServiceIdentity"),
            ("ENDPOINT_DATA_{id}_SUBSCRIPTIONID", "sub-1"),
            ("ENDPOINT_DATA_{id}_MSICLIENTID", "mi-client"),
        ];
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        match conn.credentials {
            Credentials::ManagedIdentity { client_id } => {
                assert_eq!(client_id.as_deref(), Some("mi-client"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conn.client_id, None);
    }

    #[test]
    fn id_is_looked_up_verbatim_then_case_insensitively() {
        let upper: Vec<(String, String)> = spn_base()
            .into_iter()
            .chain([("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "k")])
            .map(|(k, v)| (k.replace("{id}", &ID.to_ascii_uppercase()), v.to_owned()))
            .collect();
        let conn =
            ServiceConnection::from_env(&Environment::from_pairs(upper), ID, "ibSubscription")
                .unwrap();
        assert_eq!(conn.id, ID);
        assert_eq!(conn.subscription_id.as_deref(), Some("sub-1"));
    }

    #[test]
    fn auth_json_is_the_fallback() {
        let json = r#"{"parameters":{"serviceprincipalid":"c-json","serviceprincipalkey":"k-json","tenantid":"t-json","authenticationType":"spnKey"},"scheme":"ServicePrincipal"}"#;
        let vars = vec![
            ("ENDPOINT_URL_{id}", "https://management.azure.com/"),
            ("ENDPOINT_AUTH_{id}", json),
        ];
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert_eq!(conn.client_id.as_deref(), Some("c-json"));
        assert_eq!(conn.tenant_id.as_deref(), Some("t-json"));
        match conn.credentials {
            Credentials::ClientSecret { secret } => assert_eq!(secret.secret(), "k-json"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_variable_to_fix() {
        let err = ServiceConnection::from_env(&env(&[]), ID, "ibSubscription").unwrap_err();
        assert!(matches!(err, EndpointError::NotFound { .. }));
        assert!(err.to_string().contains("ibSubscription"));

        let err = ServiceConnection::from_env(&env(&spn_base()), ID, "ibSubscription").unwrap_err();
        assert_eq!(
            err,
            EndpointError::MissingParameter {
                id: ID.into(),
                what: "client secret",
                variable: format!("ENDPOINT_AUTH_PARAMETER_{ID}_SERVICEPRINCIPALKEY"),
            }
        );

        let mut vars = spn_base();
        vars.retain(|(k, _)| !k.ends_with("TENANTID"));
        vars.push(("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "k"));
        let err = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap_err();
        assert!(err.to_string().contains("TENANTID"), "{err}");

        let mut vars = spn_base();
        vars[1] = ("ENDPOINT_AUTH_SCHEME_{id}", "UsernamePassword");
        let err = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap_err();
        assert!(matches!(err, EndpointError::UnsupportedScheme { .. }));

        let mut vars = spn_base();
        vars.push((
            "ENDPOINT_AUTH_PARAMETER_{id}_AUTHENTICATIONTYPE",
            "spnMagic",
        ));
        let err = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap_err();
        assert!(matches!(
            err,
            EndpointError::UnsupportedAuthenticationType { .. }
        ));

        let mut vars = spn_base();
        vars[0] = ("ENDPOINT_URL_{id}", "not a url");
        vars.push(("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "k"));
        let err = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap_err();
        assert!(
            err.to_string().contains(&format!("ENDPOINT_URL_{ID}")),
            "{err}"
        );
    }

    #[test]
    fn clouds_fall_back_by_environment() {
        for (environment, login, arm) in [
            (
                "AzureChinaCloud",
                "https://login.chinacloudapi.cn/",
                "https://management.chinacloudapi.cn/",
            ),
            (
                "AzureUSGovernment",
                "https://login.microsoftonline.us/",
                "https://management.usgovcloudapi.net/",
            ),
            (
                "",
                "https://login.microsoftonline.com/",
                "https://management.azure.com/",
            ),
        ] {
            let vars = vec![
                ("ENDPOINT_AUTH_SCHEME_{id}", "ManagedServiceIdentity"),
                ("ENDPOINT_DATA_{id}_ENVIRONMENT", environment),
            ];
            let cloud = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription")
                .unwrap()
                .cloud()
                .unwrap();
            assert_eq!(
                cloud.authority.as_ref().unwrap().as_str(),
                login,
                "{environment}"
            );
            assert_eq!(cloud.resource_manager.as_str(), arm, "{environment}");
        }
    }

    #[test]
    fn connection_endpoints_win_over_defaults() {
        let mut vars = spn_base();
        vars.push(("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY", "k"));
        vars.push((
            "ENDPOINT_DATA_{id}_ENVIRONMENTAUTHORITYURL",
            "https://login.example.test",
        ));
        vars.push((
            "ENDPOINT_DATA_{id}_ACTIVEDIRECTORYSERVICEENDPOINTRESOURCEID",
            "https://management.core.windows.net/",
        ));
        let cloud = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription")
            .unwrap()
            .cloud()
            .unwrap();
        assert_eq!(
            cloud.authority.as_ref().unwrap().as_str(),
            "https://login.example.test/"
        );
        assert_eq!(
            cloud.arm_scope(),
            "https://management.core.windows.net//.default"
        );
        vars.push((
            "ENDPOINT_DATA_{id}_ACTIVEDIRECTORYAUTHORITY",
            "https://login.other.test/",
        ));
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert_eq!(
            conn.authority.unwrap().as_str(),
            "https://login.other.test/"
        );
    }

    #[test]
    fn azure_stack_needs_its_endpoints() {
        let vars = vec![
            ("ENDPOINT_AUTH_SCHEME_{id}", "ManagedServiceIdentity"),
            ("ENDPOINT_DATA_{id}_ENVIRONMENT", "AzureStack"),
        ];
        let conn = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription").unwrap();
        assert!(matches!(
            conn.cloud(),
            Err(EndpointError::UnknownCloud { .. })
        ));

        let vars = vec![
            (
                "ENDPOINT_URL_{id}",
                "https://management.local.azurestack.external",
            ),
            ("ENDPOINT_AUTH_SCHEME_{id}", "ManagedServiceIdentity"),
            ("ENDPOINT_DATA_{id}_ENVIRONMENT", "AzureStack"),
            (
                "ENDPOINT_DATA_{id}_ACTIVEDIRECTORYAUTHORITY",
                "https://adfs.local.azurestack.external/adfs/",
            ),
        ];
        let cloud = ServiceConnection::from_env(&env(&vars), ID, "ibSubscription")
            .unwrap()
            .cloud()
            .unwrap();
        assert!(cloud.is_adfs());
        assert_eq!(
            cloud.resource_manager.as_str(),
            "https://management.local.azurestack.external/"
        );
    }
}
