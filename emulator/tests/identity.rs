//! Sign-in paths against the emulator over HTTPS, trusting only its CA: client secret,
//! certificate assertion, workload identity federation (OIDC endpoint → exchange), IMDS, and the
//! Entra error shapes.

mod common;

use aib_emulator::{
    Config, defaults,
    jwt::{Jwt, SigningKey},
};
use aws_lc_rs::{rand::SystemRandom, rsa::KeyPair, signature::RSA_PKCS1_SHA256};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::Env;
use serde_json::{Value, json};
use sha2::Digest;

async fn token_request(env: &Env, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = env
        .client
        .post(env.emulator.token_url(tenant))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Client credentials with a `client_assertion` for the default app and the ARM scope.
async fn assertion_request(env: &Env, assertion: &str) -> (u16, Value) {
    token_request(
        env,
        defaults::TENANT_ID,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", defaults::CLIENT_ID),
            ("scope", "https://management.azure.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ],
    )
    .await
}

fn assert_aad_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let d = body["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
    assert!(
        d.contains("Trace ID: ") && d.contains("Correlation ID: ") && d.contains("Timestamp: "),
        "{d}"
    );
    for k in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[k].is_string(), "{k} in {body}");
    }
}

#[tokio::test]
async fn client_secret_token_and_errors() {
    let env = Env::start(Config::default()).await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", defaults::CLIENT_ID),
        ("scope", "https://management.azure.com/.default"),
        ("client_secret", defaults::CLIENT_SECRET),
    ];
    let (status, body) = token_request(&env, defaults::TENANT_ID, &ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let jwt = Jwt::decode(body["access_token"].as_str().unwrap()).unwrap();
    assert!(jwt.header.contains_key("kid"));
    assert_eq!(jwt.claim_str("aud"), Some("https://management.azure.com"));
    assert_eq!(
        jwt.claim_str("iss").unwrap(),
        format!("https://sts.windows.net/{}/", defaults::TENANT_ID)
    );
    assert_eq!(jwt.claim_str("appid"), Some(defaults::CLIENT_ID));
    assert_eq!(jwt.claim_str("oid"), Some(defaults::CLIENT_OBJECT_ID));
    assert_eq!(jwt.claim_str("tid"), Some(defaults::TENANT_ID));
    for c in ["iat", "nbf", "exp", "sub"] {
        assert!(jwt.claims.contains_key(c), "{c}");
    }

    // The token works on ARM.
    let r = env
        .client
        .get(env.url(&format!(
            "subscriptions/{}?api-version=2022-12-01",
            defaults::SUBSCRIPTION_ID
        )))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut wrong = ok;
    wrong[3].1 = "not-the-secret";
    let (status, body) = token_request(&env, defaults::TENANT_ID, &wrong).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 7000215);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Invalid client secret provided")
    );

    let (status, body) = token_request(&env, "11111111-2222-4333-8444-555555555555", &ok).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_request", 90002);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Tenant '11111111-2222-4333-8444-555555555555' not found")
    );

    let mut unknown = ok;
    unknown[1].1 = "99999999-2222-4333-8444-555555555555";
    let (status, body) = token_request(&env, defaults::TENANT_ID, &unknown).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "unauthorized_client", 700016);

    let (status, body) = token_request(&env, defaults::TENANT_ID, &ok[..3]).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 7000218);

    // Storage scope gives the storage audience.
    let mut storage = ok;
    storage[2].1 = "https://storage.azure.com/.default";
    let (_, body) = token_request(&env, defaults::TENANT_ID, &storage).await;
    let jwt = Jwt::decode(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(jwt.claim_str("aud"), Some("https://storage.azure.com"));

    // Discovery document.
    let r = env
        .client
        .get(env.url(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            defaults::TENANT_ID
        )))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["token_endpoint"],
        env.emulator.token_url(defaults::TENANT_ID).as_str()
    );
}

fn sign_rs256(key_pem: &str, header: Value, claims: Value) -> String {
    let der = aib_emulator::jwt::pem_block(key_pem, "PRIVATE KEY").unwrap();
    let key = KeyPair::from_pkcs8(&der).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn certificate_assertion() {
    let ca = aib_emulator::ca::CertificateAuthority::generate().unwrap();
    let (cert_pem, key_pem) = ca.issue_client_cert("aib-test-sp").unwrap();
    let (ec_key, ec_cert) = ec_certificate();
    let mut config = Config {
        ca: Some(ca),
        ..Config::default()
    };
    config.service_principals[0]
        .certificates
        .extend([cert_pem.clone(), ec_cert.pem()]);
    let env = Env::start(config).await;
    let der = aib_emulator::jwt::pem_block(&cert_pem, "CERTIFICATE").unwrap();
    let x5t = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
    let x5t_s256 = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let aud = env.emulator.token_url(defaults::TENANT_ID).to_string();
    let claims = json!({"aud": aud, "iss": defaults::CLIENT_ID, "sub": defaults::CLIENT_ID, "jti": "1", "nbf": now, "exp": now + 600});
    let env_ref = &env;
    let post = |assertion: String| async move { assertion_request(env_ref, &assertion).await };

    for header in [
        json!({"alg": "RS256", "typ": "JWT", "x5t": x5t}),
        json!({"alg": "RS256", "typ": "JWT", "x5t#S256": x5t_s256}),
    ] {
        let (status, body) = post(sign_rs256(&key_pem, header, claims.clone())).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["access_token"].is_string());
    }
    // Expired assertion.
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    expired["nbf"] = json!(now - 4000);
    let (status, body) = post(sign_rs256(
        &key_pem,
        json!({"alg": "RS256", "x5t": x5t}),
        expired,
    ))
    .await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 700024);
    // Wrong audience.
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("https://login.microsoftonline.com/x/oauth2/v2.0/token");
    let (status, body) = post(sign_rs256(
        &key_pem,
        json!({"alg": "RS256", "x5t": x5t}),
        wrong_aud,
    ))
    .await;
    assert_eq!(status, 401, "{body}");
    // Signed by another key, naming the registered certificate.
    let (_, other_key) = env.emulator.ca().issue_client_cert("other").unwrap();
    let (status, body) = post(sign_rs256(
        &other_key,
        json!({"alg": "RS256", "x5t": x5t}),
        claims.clone(),
    ))
    .await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 700027);
    // ES256 with a P-256 certificate (registered at start, see above); an unregistered one fails.
    let es256 = |key: &rcgen::KeyPair, cert: &rcgen::Certificate| {
        let x5t = URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(cert.der()));
        let signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
        )
        .unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT", "x5t": x5t}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = signer.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let (status, body) = post(es256(&ec_key, &ec_cert)).await;
    assert_eq!(status, 200, "{body}");
    let (stranger_key, stranger_cert) = ec_certificate();
    let (status, body) = post(es256(&stranger_key, &stranger_cert)).await;
    assert_eq!(status, 401);
    assert_aad_error(&body, "invalid_client", 700027);
}

fn ec_certificate() -> (rcgen::KeyPair, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ec-client");
    let cert = params.self_signed(&key).unwrap();
    (key, cert)
}

#[tokio::test]
async fn workload_identity_federation() {
    let env = Env::start(Config::default()).await;
    let oidc_url = env.emulator.oidc_request_uri("plan-1", "job-1");
    let ask = |token: &str| {
        env.client
            .post(format!(
                "{oidc_url}?api-version=7.1&serviceConnectionId={}",
                defaults::SERVICE_CONNECTION_ID
            ))
            .bearer_auth(token)
            .header("X-TFS-FedAuthRedirect", "Suppress")
            .json(&json!({}))
            .send()
    };
    let r = ask("wrong-token").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = ask(defaults::JOB_ACCESS_TOKEN).await.unwrap();
    assert_eq!(r.status(), 200);
    let oidc = r.json::<Value>().await.unwrap()["oidcToken"]
        .as_str()
        .unwrap()
        .to_string();
    let second = ask(defaults::JOB_ACCESS_TOKEN)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["oidcToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = (Jwt::decode(&oidc).unwrap(), Jwt::decode(&second).unwrap());
    assert_ne!(a.claim_str("jti"), b.claim_str("jti"));
    assert_eq!(a.claim_str("aud"), Some("api://AzureADTokenExchange"));
    assert_eq!(
        a.claim_str("iss").unwrap(),
        format!(
            "https://vstoken.dev.azure.com/{}",
            defaults::DEVOPS_ORGANIZATION_ID
        )
    );
    assert_eq!(
        a.claim_str("sub").unwrap(),
        format!(
            "sc://{}/{}/{}",
            defaults::DEVOPS_ORGANIZATION,
            defaults::DEVOPS_PROJECT,
            defaults::SERVICE_CONNECTION_NAME
        )
    );

    let env_ref = &env;
    let exchange = |assertion: String| async move { assertion_request(env_ref, &assertion).await };
    let (status, body) = exchange(oidc.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());

    // A token from the right issuer but another subject, signed by a stranger key.
    let stranger = SigningKey::generate().unwrap();
    let mut claims = Value::Object(a.claims.clone());
    claims["sub"] = json!("sc://aib-test-org/aib-test-project/another-connection");
    let (status, body) = exchange(stranger.sign(&claims)).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_request", 700213);
    // Unknown issuer (GitHub's is known: the default app trusts one GitHub workflow).
    claims["iss"] = json!("https://issuer.example.test");
    let (_, body) = exchange(stranger.sign(&claims)).await;
    assert_aad_error(&body, "invalid_request", 70021);
    // Right claims, wrong signature.
    let (_, body) = exchange(stranger.sign(&Value::Object(a.claims.clone()))).await;
    assert_eq!(body["error"], "invalid_client", "{body}");
}

/// GitHub Actions' OIDC endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`): the bearer request token and
/// the audience are checked; its token is accepted by the app's GitHub federated credential.
#[tokio::test]
async fn github_actions_oidc_tokens_are_exchanged() {
    let env = Env::start(Config::default()).await;
    let url = env.emulator.github_id_token_request_url("plan-1", "job-1");
    let ask = |token: &'static str, audience: Option<&'static str>| {
        let mut target = url.clone();
        if let Some(audience) = audience {
            target.query_pairs_mut().append_pair("audience", audience);
        }
        env.client
            .get(target)
            .header("authorization", format!("bearer {token}"))
            .send()
    };
    let r = ask("wrong-token", Some("api://AzureADTokenExchange"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let value = |r: reqwest::Response| async move {
        r.json::<Value>().await.unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token = value(
        ask(
            defaults::GITHUB_REQUEST_TOKEN,
            Some("api://AzureADTokenExchange"),
        )
        .await
        .unwrap(),
    )
    .await;
    let jwt = Jwt::decode(&token).unwrap();
    assert_eq!(jwt.claim_str("iss"), Some(defaults::GITHUB_ISSUER));
    assert_eq!(
        jwt.claim_str("sub").unwrap(),
        format!(
            "repo:{}:ref:{}",
            defaults::GITHUB_REPOSITORY,
            defaults::GITHUB_REF
        )
    );
    assert_eq!(jwt.claim_str("aud"), Some("api://AzureADTokenExchange"));
    let (status, body) = assertion_request(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    // Without an audience the token is for the repository owner, which Entra refuses.
    let owners = value(ask(defaults::GITHUB_REQUEST_TOKEN, None).await.unwrap()).await;
    assert_eq!(
        Jwt::decode(&owners).unwrap().claim_str("aud"),
        Some("https://github.com/aib-test-owner")
    );
    let (status, body) = assertion_request(&env, &owners).await;
    assert_eq!(status, 400);
    assert_aad_error(&body, "invalid_request", 700212);
}

#[tokio::test]
async fn imds_tokens_https_and_http() {
    let config = Config {
        imds_http: true,
        ..Config::default()
    };
    let env = Env::start(config).await;
    let path = "metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";
    let r = env.client.get(env.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    let r = env
        .client
        .get(env.url(path))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    for k in [
        "access_token",
        "client_id",
        "expires_in",
        "expires_on",
        "ext_expires_in",
        "not_before",
        "resource",
        "token_type",
    ] {
        assert!(body[k].is_string(), "{k} in {body}");
    }
    assert_eq!(body["client_id"], defaults::MANAGED_IDENTITY_CLIENT_ID);
    let jwt = Jwt::decode(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        jwt.claim_str("oid"),
        Some(defaults::MANAGED_IDENTITY_OBJECT_ID)
    );

    let http = env.emulator.imds_http_url().unwrap();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = plain
        .get(format!(
            "{http}{path}&client_id={}",
            defaults::MANAGED_IDENTITY_CLIENT_ID
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = plain
        .get(format!(
            "{http}{path}&client_id=00000000-0000-0000-0000-000000000000"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The plain-HTTP listener serves IMDS only.
    let r = plain
        .get(format!("{http}subscriptions?api-version=2022-12-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = env
        .client
        .get(env.url("metadata/endpoints?api-version=2015-01-01"))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["authentication"]["loginEndpoint"],
        env.emulator.base_url().as_str()
    );
}

#[tokio::test]
async fn untrusted_clients_cannot_connect() {
    let env = Env::start(Config::default()).await;
    let other = aib_emulator::ca::CertificateAuthority::generate().unwrap();
    let r = common::client_for(&other)
        .get(env.url("metadata/endpoints?api-version=1"))
        .send()
        .await;
    assert!(r.is_err());
}
