//! A harness for Azurite (Microsoft's Azure Storage emulator, npm `azurite`, pinned in the
//! workspace's package.json): starts `azurite-blob` on a free loopback port with its own temporary
//! data folder, checking API versions (no `--skipApiVersionCheck`), optionally with HTTPS
//! (`--cert/--key`) and `--oauth basic`, and extra accounts through `AZURITE_ACCOUNTS`; waits until
//! it accepts connections; kills it and removes the folder on drop.
//!
//! Azurite 3.35 replaces its account list with `AZURITE_ACCOUNTS` when that is set, so the harness
//! always lists `devstoreaccount1` first to keep the well-known account.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use url::Url;

pub const DEV_ACCOUNT: &str = "devstoreaccount1";
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// TLS material for Azurite.
#[derive(Debug, Clone)]
pub enum AzuriteTls {
    /// PEM texts (written into Azurite's temporary folder).
    Pem { cert: String, key: String },
    /// Existing PEM files.
    Files { cert: PathBuf, key: PathBuf },
}

#[derive(Debug, Clone, Default)]
pub struct AzuriteOptions {
    pub tls: Option<AzuriteTls>,
    /// `--oauth basic` (needs `tls`): accept bearer tokens, checking aud/iss/nbf/exp only.
    pub oauth_basic: bool,
    /// Accounts besides `devstoreaccount1`, as `(name, base64 key)`.
    pub accounts: Vec<(String, String)>,
}

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    port: u16,
    https: bool,
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Where the `azurite-blob` launcher is: `$AZURITE_BLOB_BIN`, else
    /// `<workspace>/node_modules/.bin/azurite-blob`.
    pub fn binary() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("AZURITE_BLOB_BIN").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/azurite-blob");
        if p.exists() {
            Ok(p)
        } else {
            bail!(
                "Azurite is not installed: {} is missing; run `npm ci` at the repo root (or set AZURITE_BLOB_BIN)",
                p.display()
            )
        }
    }

    /// True when [`Azurite::binary`] finds the launcher.
    pub fn available() -> bool {
        Self::binary().is_ok()
    }

    pub fn start(options: AzuriteOptions) -> Result<Azurite> {
        let bin = Self::binary()?;
        if options.oauth_basic && options.tls.is_none() {
            bail!("Azurite's --oauth basic needs HTTPS: give AzuriteOptions::tls");
        }
        let mut last_error = None;
        for _attempt in 0..3 {
            match Self::start_once(&bin, &options) {
                Ok(a) => return Ok(a),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once(bin: &Path, options: &AzuriteOptions) -> Result<Azurite> {
        let dir = tempfile::Builder::new().prefix("aib-azurite-").tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
        ])
        .arg(&data)
        // Without `--skipApiVersionCheck`: Azurite refuses an `x-ms-version` (or SAS `sv`) newer
        // than it knows, as Azure refuses one not yet deployed where the account lives, so a
        // client that forgets to pin its storage service version fails here too.
        .args(["--loose", "--disableTelemetry", "--silent"]);
        if let Some(tls) = &options.tls {
            let (cert, key) = match tls {
                AzuriteTls::Pem { cert, key } => {
                    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
                    std::fs::write(&c, cert)?;
                    std::fs::write(&k, key)?;
                    (c, k)
                }
                AzuriteTls::Files { cert, key } => (cert.clone(), key.clone()),
            };
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if options.oauth_basic {
            cmd.args(["--oauth", "basic"]);
        }
        if !options.accounts.is_empty() {
            let mut list = vec![format!("{DEV_ACCOUNT}:{DEV_ACCOUNT_KEY}")];
            list.extend(
                options
                    .accounts
                    .iter()
                    .filter(|(n, _)| n != DEV_ACCOUNT)
                    .map(|(n, k)| format!("{n}:{k}")),
            );
            cmd.env("AZURITE_ACCOUNTS", list.join(";"));
        }
        let out = std::fs::File::create(dir.path().join("azurite.out"))?;
        let err = std::fs::File::create(dir.path().join("azurite.err"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut azurite = Azurite {
            child,
            port,
            https: options.tls.is_some(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(azurite);
            }
            if let Some(status) = azurite.child.try_wait()? {
                bail!(
                    "Azurite exited ({status}) before accepting connections: {}",
                    azurite.output()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "Azurite did not accept connections on 127.0.0.1:{port} within 15 s: {}",
                    azurite.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What Azurite printed so far (stdout then stderr).
    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("azurite.out"), read("azurite.err"))
            .trim()
            .to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Path-style endpoint of an account: `http(s)://127.0.0.1:PORT/ACCOUNT/`.
    pub fn blob_endpoint(&self, account: &str) -> Url {
        let scheme = if self.https { "https" } else { "http" };
        Url::parse(&format!("{scheme}://127.0.0.1:{}/{account}/", self.port)).expect("valid URL")
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
