//! The agent's proxy settings: requests tunnel through `AGENT_PROXYURL` with its credentials,
//! URLs matching `AGENT_PROXYBYPASSLIST` go direct, and the proxy password is never printed.

mod common;

use std::sync::{Arc, Mutex};

use aib_emulator::{Config, Emulator, defaults};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP CONNECT proxy on loopback that records each request's head.
struct TunnelProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TunnelProxy {
    async fn start() -> TunnelProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let _ = tunnel(client, log).await;
                });
            }
        });
        TunnelProxy { port, seen, task }
    }

    fn heads(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TunnelProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    log.lock().unwrap().push(head.clone());
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut upstream = TcpStream::connect(target).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[tokio::test]
async fn requests_go_through_the_agent_proxy_with_its_credentials() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let proxy = TunnelProxy::start().await;
    let password = "pr0xy-p@ss;word";
    let mut vars = spn_secret_connection(&emulator, defaults::CLIENT_SECRET);
    vars.insert(
        "AGENT_CAINFO".into(),
        emulator.ca_pem_path().display().to_string(),
    );
    vars.insert(
        "AGENT_PROXYURL".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    );
    vars.insert("AGENT_PROXYUSERNAME".into(), "build-agent".into());
    vars.insert("AGENT_PROXYPASSWORD".into(), password.into());

    let (output, out) = run_task_async(&["sign-in"], vars.clone()).await;
    assert!(output.status.success(), "{out}");

    let heads = proxy.heads();
    let port = emulator.base_url().port().unwrap();
    assert!(!heads.is_empty(), "the proxy saw no request");
    use base64::Engine as _;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("build-agent:{password}"));
    for head in &heads {
        assert!(
            head.starts_with(&format!("CONNECT 127.0.0.1:{port} ")),
            "{head}"
        );
        assert!(
            head.lines()
                .any(|l| l
                    .eq_ignore_ascii_case(&format!("proxy-authorization: Basic {credentials}"))),
            "{head}"
        );
    }
    assert_no_secret_leaks(&out, &[password, defaults::CLIENT_SECRET]);

    // A bypass entry sends the same requests direct.
    vars.insert(
        "AGENT_PROXYBYPASSLIST".into(),
        r#"["127\\.0\\.0\\.1"]"#.into(),
    );
    let before = proxy.heads().len();
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert!(output.status.success(), "{out}");
    assert_eq!(
        proxy.heads().len(),
        before,
        "a bypassed URL went through the proxy"
    );
    emulator.shutdown().await;
}
