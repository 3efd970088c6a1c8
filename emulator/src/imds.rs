//! The Azure Instance Metadata Service token endpoint for the configured managed identity
//! (`/metadata/identity/oauth2/token`, IMDS answer shape with string numbers), and the Azure
//! Stack style `/metadata/endpoints` document that names the emulator as login endpoint.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    server::Req,
    state::{State, now},
};

fn imds_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]`.
pub fn token(s: &State, req: &Req) -> Response {
    if !req
        .header("metadata")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if req.param("api-version").is_none() {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = req.param("resource").filter(|r| !r.is_empty()) else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    let mi = &s.config.managed_identity;
    let matches =
        |given: Option<&str>, want: &str| given.is_none_or(|g| g.eq_ignore_ascii_case(want));
    if !matches(req.param("client_id"), &mi.client_id)
        || !matches(req.param("object_id"), &mi.object_id)
        || !matches(
            req.param("msi_res_id").or(req.param("mi_res_id")),
            &mi.resource_id,
        )
    {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    }
    let audience = resource.strip_suffix("/.default").unwrap_or(resource);
    let lifetime = s.config.token_lifetime.as_secs() as i64;
    let now = now().unix_timestamp();
    let token = s.mint_token(
        &mi.tenant_id,
        &mi.client_id,
        &mi.object_id,
        audience,
        lifetime,
        json!({"appidacr": "2", "xms_mirid": mi.resource_id, "xms_az_rid": mi.resource_id}),
    );
    Json(json!({
        "access_token": token,
        "client_id": mi.client_id,
        "expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime).to_string(),
        "ext_expires_in": lifetime.to_string(),
        "not_before": (now - 300).to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `GET /metadata/endpoints?api-version=2015-01-01` (Azure Stack style).
pub fn endpoints(s: &State, req: &Req) -> Response {
    if req.param("api-version").is_none() {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let base = s.base_url.as_str();
    Json(json!({
        "galleryEndpoint": base,
        "graphEndpoint": base,
        "portalEndpoint": base,
        "authentication": {"loginEndpoint": base, "audiences": [base]},
    }))
    .into_response()
}
