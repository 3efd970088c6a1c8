//! ARM behaviour: bearer-token checks and their 401 shapes, api-version, lookups and 404s, storage
//! accounts (paging, listKeys), platform image versions, injected faults, and the request log's
//! redaction.

mod common;

use std::time::Duration;

use aib_emulator::{Config, Fault, FaultAction, defaults};
use common::Env;
use reqwest::Method;
use serde_json::{Value, json};

/// A GET on `url` carrying `token` as its bearer token.
async fn get_with_token(env: &Env, url: &str, token: &str) -> reqwest::Response {
    env.client.get(url).bearer_auth(token).send().await.unwrap()
}

/// The JSON list the emulator's control API serves at `_emulator/{what}`.
async fn control_list(env: &Env, what: &str) -> Vec<Value> {
    env.client
        .get(env.url(&format!("_emulator/{what}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_checks_and_error_shapes() {
    let env = Env::start(Config::default()).await;
    let url = env.url(&format!(
        "subscriptions/{}/resourceGroups/{}?api-version=2022-09-01",
        defaults::SUBSCRIPTION_ID,
        defaults::RESOURCE_GROUP
    ));

    let r = env.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    assert!(
        r.headers().contains_key("x-ms-request-id")
            && r.headers().contains_key("x-ms-correlation-request-id")
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "AuthenticationFailed"
    );

    let expired = env
        .emulator
        .mint_access_token("https://management.azure.com/", -60);
    let r = get_with_token(&env, &url, &expired).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ExpiredAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is earlier than current UTC time")
    );

    let storage = env
        .emulator
        .mint_access_token("https://storage.azure.com", 600);
    let body: Value = get_with_token(&env, &url, &storage)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wrong audience")
    );

    let forged = aib_emulator::jwt::SigningKey::generate()
        .unwrap()
        .sign(&json!({"aud": "https://management.azure.com/", "exp": 9999999999i64}));
    let r = get_with_token(&env, &url, &forged).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "InvalidAuthenticationToken"
    );

    for aud in [
        "https://management.azure.com/",
        "https://management.core.windows.net/",
        env.emulator.base_url().as_str(),
    ] {
        let token = env.emulator.mint_access_token(aud, 600);
        let r = get_with_token(&env, &url, &token).await;
        assert_eq!(r.status(), 200, "{aud}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["name"],
            defaults::RESOURCE_GROUP
        );
    }

    let (status, _, body) = env
        .arm(
            Method::GET,
            "subscriptions/0e5c4a1d-0000-4a1b-9000-00000000ffff/resourceGroups/x",
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("SubscriptionNotFound"))
    );
    let (status, _, body) = env
        .arm(
            Method::GET,
            &format!(
                "subscriptions/{}/resourceGroups/nope",
                defaults::SUBSCRIPTION_ID
            ),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceGroupNotFound"))
    );
    let (status, _, body) = env
        .arm(Method::GET, &env.template_path("missing"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("under resource group 'aib-test-rg' was not found")
    );
    let r = env
        .client
        .get(env.url(&env.rg_path()))
        .bearer_auth(env.arm_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "MissingApiVersionParameter"
    );
}

#[tokio::test]
async fn storage_accounts_paging_and_keys() {
    let config = Config {
        storage_page_size: 1,
        ..Config::default()
    };
    let env = Env::start(config).await;
    let mut url = format!(
        "subscriptions/{}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01",
        defaults::SUBSCRIPTION_ID
    );
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, body) = env.arm(Method::GET, &url, None).await;
        assert_eq!(status, 200);
        pages += 1;
        for a in body["value"].as_array().unwrap() {
            names.push(a["name"].as_str().unwrap().to_string());
            assert_eq!(a["kind"], "StorageV2");
            assert_eq!(a["properties"]["provisioningState"], "Succeeded");
            assert!(
                a["properties"]["primaryEndpoints"]["blob"]
                    .as_str()
                    .unwrap()
                    .ends_with('/')
            );
        }
        match body["nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(env.emulator.base_url().as_str()));
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        names,
        vec![defaults::STORAGE_ACCOUNT, defaults::NO_KEY_STORAGE_ACCOUNT]
    );

    let account_path = |name: &str| {
        format!(
            "{}/providers/Microsoft.Storage/storageAccounts/{name}",
            env.rg_path()
        )
    };
    let account = account_path(defaults::STORAGE_ACCOUNT);
    let (status, _, body) = env
        .arm(Method::POST, &format!("{account}/listKeys"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["keyName"], "key1");
    assert_eq!(body["keys"][0]["value"], defaults::STORAGE_ACCOUNT_KEY);
    assert_eq!(body["keys"][0]["permissions"], "FULL");
    let no_keys = account_path(defaults::NO_KEY_STORAGE_ACCOUNT);
    let (status, _, body) = env
        .arm(Method::POST, &format!("{no_keys}/listKeys"), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed"))
    );
    let (_, _, body) = env.arm(Method::GET, &no_keys, None).await;
    assert_eq!(body["properties"]["allowSharedKeyAccess"], false);
}

#[tokio::test]
async fn platform_image_versions() {
    let env = Env::start(Config::default()).await;
    let base = format!(
        "subscriptions/{}/providers/Microsoft.Compute/locations/westus2/publishers/canonical/artifacttypes/vmimage/offers/0001-COM-UBUNTU-SERVER-JAMMY/skus/22_04-lts-gen2/versions",
        defaults::SUBSCRIPTION_ID
    );
    let (status, _, body) = env
        .arm(Method::GET, &format!("{base}?api-version=2024-07-01"), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["22.04.202409250", "22.04.202410020", "22.04.202411010"]
    );
    assert!(
        body[0]["id"]
            .as_str()
            .unwrap()
            .contains("/Versions/22.04.202409250")
    );
    let (status, _, body) = env
        .arm(
            Method::GET,
            &format!("{base}/22.04.202410020?api-version=2024-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["properties"]["osDiskImage"]["operatingSystem"],
        "Linux"
    );
    let (status, _, _) = env
        .arm(
            Method::GET,
            &format!("{base}/1.2.3?api-version=2024-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = env
        .arm(
            Method::GET,
            &base.replace("22_04-lts-gen2", "nope").to_string(),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn faults_apply_n_times_then_normal() {
    let env = Env::start(Config::default()).await;
    let path = env.rg_path();
    env.emulator
        .add_fault(Fault::throttle("GET", "/resourceGroups/aib-test-rg$", 7).times(2));
    for _ in 0..2 {
        let (status, headers, body) = env.arm(Method::GET, &path, None).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(body["error"]["code"], "TooManyRequests");
    }
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 200);

    env.emulator
        .add_fault(Fault::status("GET", "aib-test-rg$", 503));
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 503);
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 200);

    env.emulator
        .add_fault(Fault::drop_connection("GET", "aib-test-rg$").times(2));
    for _ in 0..2 {
        let r = env
            .client
            .get(format!("{}?api-version=2022-09-01", env.url(&path)))
            .bearer_auth(env.arm_token())
            .send()
            .await;
        let e = r.expect_err("the connection is dropped");
        assert!(!e.is_timeout(), "{e:?}");
    }
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 200);

    env.emulator.add_fault(Fault::delay(
        "GET",
        "aib-test-rg$",
        Duration::from_millis(300),
    ));
    let t = std::time::Instant::now();
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Over HTTP, as the binary's users do.
    let r = env
        .client
        .post(env.url("_emulator/faults"))
        .json(&json!({"method": "GET", "path": "aib-test-rg$", "action": {"status": {"code": 500}}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 500);
    env.client
        .post(env.url("_emulator/faults"))
        .json(&json!({"path": ".", "action": "drop_connection", "times": 5}))
        .send()
        .await
        .unwrap();
    let listed = control_list(&env, "faults").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["times"], 5);
    assert_eq!(
        env.client
            .delete(env.url("_emulator/faults"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(env.arm(Method::GET, &path, None).await.0, 200);

    let recorded = control_list(&env, "requests").await;
    assert!(
        recorded
            .iter()
            .all(|r| !r["path"].as_str().unwrap().starts_with("/_emulator"))
    );
    assert_eq!(
        recorded
            .iter()
            .filter(|r| r["fault"] == "drop_connection")
            .count(),
        2
    );
    let _ = FaultAction::DropConnection;
}

#[tokio::test]
async fn request_log_redacts_secrets() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let config = Config {
        request_log: Some(log.path().to_path_buf()),
        ..Config::default()
    };
    let env = Env::start(config).await;
    let token = env
        .secret_token("https://management.azure.com/.default")
        .await;
    let sas_sig = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";
    let body = common::template_body(
        json!([{"type": "File", "name": "f", "sourceUri": format!("https://x.blob.core.windows.net/c/a.zip?sv=2022-11-02&sig={sas_sig}"), "destination": "/tmp/a.zip"}]),
        json!([]),
    );
    let r = env
        .client
        .put(format!(
            "{}?api-version=2024-02-01&sig=querysecret",
            env.url(&env.template_path("redaction"))
        ))
        .bearer_auth(&token)
        .header("x-ms-copy-source-authorization", "Bearer abc")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() < 500);

    let memory = serde_json::to_string(&env.emulator.requests()).unwrap();
    let file = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(file.lines().count(), 2);
    for text in [&memory, &file] {
        for secret in [
            defaults::CLIENT_SECRET,
            &token,
            sas_sig,
            "querysecret",
            "Bearer abc",
        ] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
        assert!(text.contains("REDACTED"));
    }
    let first = &env.emulator.requests()[0];
    assert_eq!(first.status, 200);
    assert_eq!(first.method, "POST");
    assert!(
        first
            .body
            .as_ref()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("client_secret=REDACTED")
    );
    assert_eq!(
        env.emulator.requests()[1].headers["authorization"],
        "Bearer REDACTED"
    );
}
