//! Entra ID (Azure AD) on the emulator's origin: the v2.0 token endpoint for the client
//! credentials grant (client secret, certificate assertion, federated assertion), the
//! discovery documents, and the real error shape (`AADSTS…` codes with trace and correlation
//! ids). Tokens are minted by [`crate::state::State::mint_token`].

use axum::{
    Json,
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use crate::{
    config::{ServicePrincipalConfig, defaults::GITHUB_ISSUER},
    jwt::Jwt,
    server::Req,
    state::{State, now},
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on assertion times.
const SKEW_SECS: i64 = 300;

/// An Entra error answer: `{"error","error_description","error_codes",…}`.
pub fn aad_error(s: &State, status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let correlation = uuid::Uuid::new_v4().to_string();
    let t = now();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("{}error?code={code}", s.base_url),
    });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        "x-ms-ests-server",
        HeaderValue::from_static("2.1.19000.5 - aib-emulator"),
    );
    r
}

fn bad_request(s: &State, error: &str, code: u32, text: &str) -> Response {
    aad_error(s, StatusCode::BAD_REQUEST, error, code, text)
}

fn unauthorized(s: &State, code: u32, text: &str) -> Response {
    aad_error(s, StatusCode::UNAUTHORIZED, "invalid_client", code, text)
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub fn token(s: &State, tenant: &str, req: &Req) -> Response {
    let Some(tenant) = s.find_tenant(tenant).map(str::to_owned) else {
        return bad_request(
            s,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    };
    let form = req.form();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // client_secret_basic
    let basic = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|b| {
            b.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });

    match field("grant_type") {
        Some("client_credentials") => {}
        None => {
            return bad_request(
                s,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
        Some(other) => {
            return bad_request(
                s,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
    }
    let Some(client_id) = field("client_id").or(basic.as_ref().map(|b| b.0.as_str())) else {
        return bad_request(
            s,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    // The v1 endpoint takes `resource`; v2 takes `scope` = `<resource>/.default`.
    let v1_scope = field("resource").map(|r| format!("{r}/.default"));
    let Some(scope) = field("scope").or(v1_scope.as_deref()) else {
        return bad_request(
            s,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(resource) = scope
        .split_whitespace()
        .find_map(|sc| sc.strip_suffix("/.default"))
    else {
        return bad_request(
            s,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let Some(sp) = s.find_service_principal(&tenant, client_id) else {
        return bad_request(
            s,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    };

    let secret = field("client_secret").or(basic.as_ref().map(|b| b.1.as_str()));
    let appidacr = match (secret, field("client_assertion")) {
        (Some(secret), _) => {
            if !sp.client_secrets.iter().any(|s| s == secret) {
                return unauthorized(
                    s,
                    7000215,
                    &format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                        sp.client_id
                    ),
                );
            }
            "1"
        }
        (None, Some(assertion)) => {
            if field("client_assertion_type") != Some(JWT_BEARER) {
                return bad_request(
                    s,
                    "invalid_request",
                    50027,
                    &format!("Invalid client_assertion_type; it must be '{JWT_BEARER}'."),
                );
            }
            if let Err(r) = check_assertion(s, &tenant, sp, assertion) {
                return *r;
            }
            "2"
        }
        (None, None) => {
            return unauthorized(
                s,
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        }
    };
    let lifetime = s.config.token_lifetime.as_secs() as i64;
    let token = s.mint_token(
        &tenant,
        &sp.client_id,
        &sp.object_id,
        resource,
        lifetime,
        json!({"appidacr": appidacr}),
    );
    let mut r = Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
    .into_response();
    r.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

/// Checks a `client_assertion`: a certificate assertion when the app issued it (`iss` = client
/// id, header `x5t` / `x5t#S256`), otherwise a federated token.
fn check_assertion(
    s: &State,
    tenant: &str,
    sp: &ServicePrincipalConfig,
    assertion: &str,
) -> Result<(), Box<Response>> {
    let jwt = Jwt::decode(assertion).map_err(|e| {
        Box::new(bad_request(
            s,
            "invalid_request",
            50027,
            &format!("JWT token is invalid or malformed ({e})."),
        ))
    })?;
    let now = now().unix_timestamp();
    let time_ok = |jwt: &Jwt| -> Result<(), Box<Response>> {
        let exp = jwt.claim_i64("exp").unwrap_or(0);
        let nbf = jwt.claim_i64("nbf").unwrap_or(0);
        if exp + SKEW_SECS < now || nbf - SKEW_SECS > now {
            return Err(Box::new(unauthorized(
                s,
                700024,
                &format!(
                    "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}."
                ),
            )));
        }
        Ok(())
    };
    // A certificate assertion is issued by the app itself; anything else is a federated token
    // (whose header may carry an `x5t` of the external issuer's key too).
    let thumbprint = jwt
        .header
        .get("x5t#S256")
        .or(jwt.header.get("x5t"))
        .and_then(Value::as_str);
    let self_issued = jwt
        .claim_str("iss")
        .is_some_and(|iss| iss.eq_ignore_ascii_case(&sp.client_id));
    if let Some(thumbprint) = thumbprint.filter(|_| self_issued) {
        let cert = s
            .certificates
            .get(&sp.client_id.to_ascii_lowercase())
            .and_then(|certs| certs.iter().find(|c| c.matches_thumbprint(thumbprint)))
            .ok_or_else(|| {
                Box::new(unauthorized(
                    s,
                    700027,
                    &format!("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]", sp.client_id),
                ))
            })?;
        jwt.verify_with_certificate(cert).map_err(|e| {
            Box::new(unauthorized(
                s,
                700027,
                &format!("Client assertion failed signature validation. ({e})"),
            ))
        })?;
        let endpoint = s.token_endpoint(tenant).to_string();
        let v1_endpoint = s
            .base_url
            .join(&format!("{tenant}/oauth2/token"))
            .map(|u| u.to_string())
            .unwrap_or_default();
        let auds = jwt.audiences();
        if !auds
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&endpoint) || a.eq_ignore_ascii_case(&v1_endpoint))
        {
            return Err(Box::new(unauthorized(
                s,
                700021,
                &format!(
                    "Client assertion audience claim does not match Realm issuer. Review the documentation at https://aka.ms/certCredentials. Audience: {auds:?}, expected '{endpoint}'."
                ),
            )));
        }
        for claim in ["iss", "sub"] {
            if !jwt
                .claim_str(claim)
                .is_some_and(|v| v.eq_ignore_ascii_case(&sp.client_id))
            {
                return Err(Box::new(unauthorized(
                    s,
                    700023,
                    &format!(
                        "Client assertion claim '{claim}' must be the client id '{}'.",
                        sp.client_id
                    ),
                )));
            }
        }
        return time_ok(&jwt);
    }

    // Federated token.
    let iss = jwt.claim_str("iss").unwrap_or_default();
    let sub = jwt.claim_str("sub").unwrap_or_default();
    let auds = jwt.audiences();
    let by_issuer: Vec<_> = sp
        .federated_credentials
        .iter()
        .filter(|f| f.issuer == iss)
        .collect();
    if by_issuer.is_empty() {
        return Err(Box::new(bad_request(
            s,
            "invalid_request",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                auds.join(",")
            ),
        )));
    }
    let by_subject: Vec<_> = by_issuer.into_iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        return Err(Box::new(bad_request(
            s,
            "invalid_request",
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        )));
    }
    if !by_subject
        .iter()
        .any(|f| f.audiences.iter().any(|a| auds.contains(a)))
    {
        return Err(Box::new(bad_request(
            s,
            "invalid_request",
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                auds.join(",")
            ),
        )));
    }
    // The emulator signs both issuers' tokens with one key (Azure DevOps' and GitHub's).
    let known_issuer = iss == s.config.devops.issuer() || iss == GITHUB_ISSUER;
    if !known_issuer || !s.oidc_key.verify(&jwt) {
        return Err(Box::new(unauthorized(
            s,
            50013,
            "Assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: 'unknown']",
        )));
    }
    time_ok(&jwt)
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub fn openid_configuration(s: &State, tenant: &str) -> Response {
    let Some(tenant) = s.find_tenant(tenant) else {
        return bad_request(
            s,
            "invalid_tenant",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    };
    let base = &s.base_url;
    Json(json!({
        "token_endpoint": format!("{base}{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}{tenant}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}{tenant}/oauth2/v2.0/logout"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the access-token signing key.
pub fn keys(s: &State) -> Response {
    Json(json!({"keys": [s.token_key.jwk()]})).into_response()
}
