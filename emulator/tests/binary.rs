//! The `aib-emulator` binary: starts with one command (with Azurite when installed), prints its
//! human line and JSON line, serves sign-in, logs requests, and stops cleanly on SIGTERM
//! (taking Azurite down with it).

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use aib_emulator::{azurite::Azurite, defaults};
use serde_json::Value;

#[tokio::test]
async fn starts_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let log = dir.path().join("requests.jsonl");
    let with_azurite = Azurite::available();
    if !with_azurite {
        eprintln!(
            "Azurite is not installed (run `npm ci` at the repo root): testing the binary without --start-azurite"
        );
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aib-emulator"));
    cmd.arg("--ca-out")
        .arg(&ca)
        .arg("--request-log")
        .arg(&log)
        .arg("--config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/failing-build.json"
        ))
        .args(["--token-lifetime", "120", "--time-scale", "0.5"])
        .args([
            "--fault",
            r#"{"method":"GET","path":"^/metadata/endpoints$","action":{"status":{"code":503}}}"#,
        ]);
    if with_azurite {
        cmd.args(["--start-azurite", "--azurite-oauth"]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let human = lines.next().unwrap().unwrap();
    assert!(
        human.starts_with("aib-emulator listening on https://127.0.0.1:"),
        "{human}"
    );
    assert!(
        human.contains(&format!("(CA certificate: {})", ca.display())),
        "{human}"
    );
    let info: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(info["client_secret"], defaults::CLIENT_SECRET);
    assert_eq!(info["tenant_id"], defaults::TENANT_ID);
    let base = info["base_url"].as_str().unwrap().to_string();

    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy()
        .build()
        .unwrap();
    let r = client
        .post(format!("{base}{}/oauth2/v2.0/token", defaults::TENANT_ID))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", defaults::CLIENT_ID),
            ("scope", "https://storage.azure.com/.default"),
            ("client_secret", defaults::CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["expires_in"], 120, "--token-lifetime");
    let token = body["access_token"].as_str().unwrap().to_string();
    let endpoints = format!("{base}metadata/endpoints?api-version=2015-01-01");
    assert_eq!(
        client.get(&endpoints).send().await.unwrap().status(),
        503,
        "--fault"
    );
    assert_eq!(client.get(&endpoints).send().await.unwrap().status(), 200);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.lines().count(), 3);
    assert!(!logged.contains(defaults::CLIENT_SECRET));

    let azurite_port = if with_azurite {
        let endpoint = info["storage_accounts"][0]["blob_endpoint"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
        let r = client
            .put(format!("{endpoint}bincontainer?restype=container"))
            .bearer_auth(&token)
            .header("x-ms-version", "2021-08-06")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        Some(info["azurite"]["port"].as_u64().unwrap() as u16)
    } else {
        None
    };

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    if let Some(port) = azurite_port {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "Azurite stopped with the emulator"
        );
    }
}
