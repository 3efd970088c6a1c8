//! The OIDC endpoints a job calls for workload identity federation, each minting a fresh ID token
//! per call, signed with the issuer key Entra later verifies it with:
//! - Azure DevOps (`SYSTEM_OIDCREQUESTURI`): checks the job access token and the service
//!   connection;
//! - GitHub Actions (`ACTIONS_ID_TOKEN_REQUEST_URL`): checks the bearer request token
//!   (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`) and takes the `audience` parameter, as GitHub's docs
//!   "About security hardening with OpenID Connect" describe; issuer
//!   `https://token.actions.githubusercontent.com`, subject `repo:<owner>/<repo>:ref:<ref>`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    config::defaults::{FEDERATED_AUDIENCE, GITHUB_ISSUER},
    server::Req,
    state::{State, now},
};

/// An Azure DevOps error body (`{"$id","message","typeName","typeKey",…}`).
fn ado_error(status: StatusCode, type_key: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": format!("Microsoft.TeamFoundation.DistributedTask.WebApi.{type_key}, Microsoft.TeamFoundation.DistributedTask.WebApi"),
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        })),
    )
        .into_response()
}

/// `POST /{org}/{project}/_apis/distributedtask/hubs/{hub}/plans/{plan}/jobs/{job}/oidctoken`.
pub fn token(s: &State, req: &Req, seg: &[&str]) -> Response {
    let d = &s.config.devops;
    if req.method != axum::http::Method::POST {
        return ado_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "HttpMethodNotAllowedException",
            "The requested resource does not support http method.",
        );
    }
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    if !bearer.is_some_and(|t| d.job_access_tokens.iter().any(|a| a == t)) {
        return ado_error(
            StatusCode::UNAUTHORIZED,
            "UnauthorizedRequestException",
            "TF400813: The user 'Anonymous' is not authorized to access this resource.",
        );
    }
    let api_version = req.param("api-version").map(str::to_owned).or_else(|| {
        req.header("accept")
            .and_then(|a| a.split("api-version=").nth(1))
            .map(|v| v.trim().to_string())
    });
    if !api_version
        .as_deref()
        .is_some_and(|v| v.starts_with("7.") || v.starts_with("6."))
    {
        return ado_error(
            StatusCode::BAD_REQUEST,
            "VssVersionNotSpecifiedException",
            "No api-version was supplied for the \"POST\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. '?api-version=1.0').",
        );
    }
    if !seg[0].eq_ignore_ascii_case(&d.organization)
        || !(seg[1].eq_ignore_ascii_case(&d.project_id)
            || seg[1].eq_ignore_ascii_case(&d.project_name))
    {
        return ado_error(
            StatusCode::NOT_FOUND,
            "ProjectDoesNotExistWithNameException",
            &format!(
                "TF200016: The following project does not exist: {}.",
                seg[1]
            ),
        );
    }
    let Some(connection_id) = req.param("serviceConnectionId") else {
        return ado_error(
            StatusCode::BAD_REQUEST,
            "ArgumentNullException",
            "Value cannot be null.\r\nParameter name: serviceConnectionId",
        );
    };
    let Some(connection) = d
        .service_connections
        .iter()
        .find(|c| c.id.eq_ignore_ascii_case(connection_id))
    else {
        return ado_error(
            StatusCode::NOT_FOUND,
            "ServiceEndpointNotFoundException",
            &format!(
                "Service connection {connection_id} was not found or the job is not authorized to use it."
            ),
        );
    };
    let now = now().unix_timestamp();
    let claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("sc://{}/{}/{}", d.organization, d.project_name, connection.name),
        "aud": FEDERATED_AUDIENCE,
        "iss": d.issuer(),
        "nbf": now,
        "iat": now,
        "exp": now + d.oidc_token_lifetime.as_secs() as i64,
    });
    Json(json!({"oidcToken": s.oidc_key.sign(&claims)})).into_response()
}

/// `GET …/_apis/distributedtask/hubs/Actions/plans/{plan}/jobs/{job}/idtoken?api-version=2.0`
/// `&audience=…` with `Authorization: bearer <request token>` → `{"value": "<jwt>"}`. Without
/// `audience` the token's audience is the repository owner's URL (GitHub's default), which
/// Entra then refuses, as it would in Azure.
pub fn github_token(s: &State, req: &Req) -> Response {
    let g = &s.config.github;
    if req.method != axum::http::Method::GET && req.method != axum::http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(json!({"message": "The requested resource does not support http method."})),
        )
            .into_response();
    }
    let bearer = req.header("authorization").and_then(|h| {
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    if !bearer.is_some_and(|t| g.request_tokens.iter().any(|a| a == t)) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable or the request token is not valid."})),
        )
            .into_response();
    }
    let audience = req
        .param("audience")
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("https://github.com/{}", g.owner()));
    let now = now().unix_timestamp();
    let claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": g.subject(),
        "aud": audience,
        "ref": g.git_ref,
        "ref_type": "branch",
        "repository": g.repository,
        "repository_owner": g.owner(),
        "run_id": g.run_id,
        "run_attempt": g.run_attempt,
        "event_name": "push",
        "iss": GITHUB_ISSUER,
        "nbf": now,
        "iat": now,
        "exp": now + g.oidc_token_lifetime.as_secs() as i64,
    });
    Json(json!({"count": 1, "value": s.oidc_key.sign(&claims)})).into_response()
}
