//! The isolated Linux the steps run in, resembling the build VM: a container (Docker or
//! Podman) of the mapped image, or else a `debootstrap` root filesystem (cached between runs,
//! copied for each rehearsal) entered with `unshare` and `chroot`.
//!
//! Either way the steps run as Image Builder's Shell customizer runs them: as the unprivileged
//! user `packer` (the user Packer signs in with on the build VM) in its home folder, with a
//! `sudo` that needs no password, each step its own script. The host's network is shared, so the
//! archive server on 127.0.0.1 is reachable; nothing else of the host is (no `/home`, no agent
//! folders). A chroot step runs in its own mount, PID and UTS namespaces: when it ends or times
//! out, every process it started dies with it and its mounts vanish. The container is removed
//! with `rm -f`; the chroot copy is deleted.
//!
//! The argument lists are built by pure functions, unit-tested without an engine.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};

/// The user steps run as, and its home folder (the working directory of every step).
pub const USER: &str = "packer";
pub const HOME: &str = "/home/packer";
/// The host name a chroot step sees.
pub const HOSTNAME: &str = "aib-rehearsal";

/// What `debootstrap` adds to `minbase` so the root filesystem has what every marketplace
/// Debian and Ubuntu image has and the template's lines use: `sudo`, `curl` (with CA
/// certificates) and `python3` (the extraction's fallback when `unzip` is absent, as on Ubuntu).
/// scripts/test prepares the tests' root filesystem with the same list.
pub const ROOTFS_PACKAGES: &str = "sudo,curl,ca-certificates,python3";

/// A container engine on the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// Where the steps run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Container(Engine),
    Chroot,
}

/// Picks the environment: a working engine wins unless `preference` (the
/// `AIB_REHEARSAL_ENVIRONMENT` variable: `container`, `chroot` or `auto`) says otherwise.
pub fn choose(preference: Option<&str>, engine: Option<Engine>) -> Result<Choice> {
    match preference.map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") => Ok(engine.map_or(Choice::Chroot, Choice::Container)),
        Some("chroot") => Ok(Choice::Chroot),
        Some("container") | Some("docker") | Some("podman") => engine
            .map(Choice::Container)
            .ok_or_else(|| anyhow!("AIB_REHEARSAL_ENVIRONMENT asks for a container, but neither Docker nor Podman answers on this agent")),
        Some(other) => bail!(
            "AIB_REHEARSAL_ENVIRONMENT is '{other}': expected `auto`, `container` or `chroot`"
        ),
    }
}

/// The first engine whose daemon (or, for Podman, whose runtime) answers.
pub async fn detect_engine() -> Option<Engine> {
    for engine in [Engine::Docker, Engine::Podman] {
        let probe = tokio::process::Command::new(engine.program())
            .args(["info", "--format", "{{json .}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        if let Ok(Ok(status)) =
            tokio::time::timeout(std::time::Duration::from_secs(20), probe).await
            && status.success()
        {
            return Some(engine);
        }
    }
    None
}

/// Root is needed for `chroot` and the namespaces.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Run as root inside the environment before the first step: the `packer` user with
/// password-less `sudo`, and the tools marketplace images have (`sudo`, `curl`, `python3`)
/// installed when the image lacks them, as slim container images do.
pub const SETUP_SCRIPT: &str = r#"set -e
if ! id packer >/dev/null 2>&1; then
  useradd -m -s /bin/bash packer 2>/dev/null || useradd -m packer 2>/dev/null || adduser -D packer
fi
missing=""
for tool in sudo curl python3; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "aib-task: installing what marketplace images have and this one lacks:$missing"
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing ca-certificates >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y -q $missing
  elif command -v microdnf >/dev/null 2>&1; then
    microdnf install -y $missing
  elif command -v yum >/dev/null 2>&1; then
    yum install -y -q $missing
  fi
fi
command -v sudo >/dev/null 2>&1 || { echo "aib-task: no sudo in the environment and none could be installed" >&2; exit 1; }
mkdir -p /etc/sudoers.d
echo 'packer ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-aib-rehearsal
chmod 0440 /etc/sudoers.d/90-aib-rehearsal
echo "aib-task: steps run as $(id packer)"
"#;

// ---------------------------------------------------------------------------------------------
// Argument lists (pure).

/// How long a rehearsal container lives at most: it is removed when the rehearsal ends, and a
/// task killed before that (a cancelled job) leaves it only until then (`--rm` on exit).
pub const CONTAINER_LIFETIME_SECONDS: u64 = 4 * 3600;

/// `docker run`: the image kept alive with `sleep` for [`CONTAINER_LIFETIME_SECONDS`], on the
/// host's network (to reach the archive server on 127.0.0.1), labelled so a leftover can be
/// found.
pub fn container_run_args(image: &str, name: &str) -> Vec<String> {
    let lifetime = CONTAINER_LIFETIME_SECONDS.to_string();
    [
        "run",
        "--detach",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--label",
        "aib-task.rehearsal=true",
        "--entrypoint",
        "sleep",
        image,
        &lifetime,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `docker exec` of `script` (a path inside the container) as `user` in `workdir`, its
/// standard error joined to its standard output.
pub fn container_exec_args(name: &str, user: &str, workdir: &str, script: &str) -> Vec<String> {
    let home = if user == "root" { "/root" } else { HOME };
    [
        "exec",
        "--user",
        user,
        "--workdir",
        workdir,
        "--env",
        &format!("HOME={home}"),
        "--env",
        &format!("USER={user}"),
        "--env",
        &format!("LOGNAME={user}"),
        name,
        "/bin/sh",
        "-c",
        r#"exec "$0" 2>&1"#,
        script,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `docker cp` of a host file to `destination` in the container.
pub fn container_copy_args(name: &str, host_file: &Path, destination: &str) -> Vec<String> {
    vec![
        "cp".into(),
        host_file.display().to_string(),
        format!("{name}:{destination}"),
    ]
}

/// `docker rm -f`.
pub fn container_remove_args(name: &str) -> Vec<String> {
    vec!["rm".into(), "--force".into(), name.into()]
}

/// Run by `unshare` as root, in the step's own namespaces: the kernel and device files the
/// steps need, then `chroot` as `$2` into `$1`, a clean environment, `cd $3`, and the script `$4`.
///
/// This shell stays the namespace's first process (it does not `exec`): `--kill-child` sends it
/// SIGKILL when `unshare` dies, and the kernel then kills every process of the step. A process
/// that changed its user (as `chroot --userspec` does) would have lost that parent-death signal.
const CHROOT_ENTER: &str = r#"set -e
root=$1 user=$2 home=$3 script=$4
mount -t proc proc "$root/proc"
for node in null zero full random urandom tty; do
  [ -e "$root/dev/$node" ] || : > "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -p "$root/dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
hostname aib-rehearsal
status=0
chroot --userspec="$user:$user" "$root" /usr/bin/env -i HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/sh LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c 'cd "$1" && exec "$2" 2>&1' sh "$home" "$script" || status=$?
exit "$status"
"#;

/// `unshare` arguments that run `script` (a path inside `root`) as `user` in `home`. With
/// `--kill-child`, killing `unshare` kills the namespace's first process and so every process
/// of the step.
pub fn chroot_step_args(root: &Path, user: &str, home: &str, script: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        CHROOT_ENTER,
        "aib-rehearsal-enter",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        root.display().to_string(),
        user.to_owned(),
        home.to_owned(),
        script.to_owned(),
    ]);
    args
}

/// `debootstrap` arguments for the cached root filesystem.
/// (`mirror` `None`: debootstrap's default archive for the suite).
pub fn debootstrap_args(suite: &str, target: &Path, mirror: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--variant=minbase".into(),
        format!("--include={ROOTFS_PACKAGES}"),
        suite.into(),
        target.display().to_string(),
    ];
    args.extend(mirror.map(str::to_owned));
    args
}

/// Where cached root filesystems live: `AIB_REHEARSAL_ROOTFS_DIR`, else the agent's tools
/// folder (kept between jobs on self-hosted agents), else `~/.cache`.
pub fn rootfs_cache_dir(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = get("AIB_REHEARSAL_ROOTFS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(tools) = get("AGENT_TOOLSDIRECTORY").filter(|d| !d.is_empty()) {
        return Path::new(&tools).join("aib-task").join("rehearsal-rootfs");
    }
    let cache = get("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("aib-task").join("rehearsal-rootfs")
}

/// The cached root filesystem of `suite` in `cache_dir`.
pub fn rootfs_path(cache_dir: &Path, suite: &str) -> PathBuf {
    cache_dir.join(format!("{suite}-minbase"))
}

// ---------------------------------------------------------------------------------------------
// The environment (I/O).

/// A prepared environment; [`Sandbox::teardown`] removes it (and dropping it does too, as a
/// last resort).
pub struct Sandbox {
    kind: Kind,
    /// Host folder for files on their way in (scripts, fetched files).
    staging: tempfile::TempDir,
    torn_down: bool,
}

enum Kind {
    Container {
        engine: Engine,
        name: String,
    },
    Chroot {
        root: PathBuf,
        /// Holds the copy of the root filesystem; deleted on teardown.
        _copy: tempfile::TempDir,
        uid: u32,
        gid: u32,
    },
}

impl Sandbox {
    /// Starts a container of `image`. Its output (the image's pull) is returned for the log.
    pub async fn container(engine: Engine, image: &str, temp: &Path) -> Result<(Sandbox, String)> {
        let name = format!(
            "aib-rehearsal-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let output = tokio::process::Command::new(engine.program())
            .args(container_run_args(image, &name))
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot start {}", engine.program()))?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!(
                "{} could not start a container of {image}: {}",
                engine.program(),
                log.trim()
            );
        }
        let sandbox = Sandbox {
            kind: Kind::Container { engine, name },
            staging: tempfile::Builder::new()
                .prefix("aib-rehearsal-")
                .tempdir_in(temp)?,
            torn_down: false,
        };
        Ok((sandbox, log))
    }

    /// Copies the cached root filesystem at `rootfs` into a fresh folder under `temp`.
    pub async fn chroot(rootfs: &Path, temp: &Path) -> Result<Sandbox> {
        let copy = tempfile::Builder::new()
            .prefix("aib-rehearsal-root-")
            .tempdir_in(temp)?;
        let root = copy.path().join("root");
        let status = tokio::process::Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(&root)
            .stdin(Stdio::null())
            .status()
            .await
            .context("cannot run cp")?;
        if !status.success() {
            bail!("cannot copy the root filesystem {}", rootfs.display());
        }
        // The host name resolves, as on the VM (sudo looks it up).
        let hosts = root.join("etc/hosts");
        let mut text = std::fs::read_to_string(&hosts).unwrap_or_default();
        text.push_str(&format!("127.0.1.1\t{HOSTNAME}\n"));
        std::fs::write(&hosts, text)?;
        std::fs::write(root.join("etc/hostname"), format!("{HOSTNAME}\n"))?;
        // Names resolve as on the host (a step may install packages).
        if let Ok(resolv) = std::fs::read("/etc/resolv.conf") {
            let target = root.join("etc/resolv.conf");
            let _ = std::fs::remove_file(&target);
            std::fs::write(target, resolv)?;
        }
        Ok(Sandbox {
            kind: Kind::Chroot {
                root,
                _copy: copy,
                uid: 0,
                gid: 0,
            },
            staging: tempfile::Builder::new()
                .prefix("aib-rehearsal-")
                .tempdir_in(temp)?,
            torn_down: false,
        })
    }

    /// A description for the log: `container aib-rehearsal-… (docker)`, `chroot /tmp/…`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Container { engine, name } => format!("container {name} ({})", engine.program()),
            Kind::Chroot { root, .. } => format!("chroot {}", root.display()),
        }
    }

    /// Runs [`SETUP_SCRIPT`] as root; returns its output, or fails with it.
    pub async fn setup(&mut self) -> Result<String> {
        let path = "/tmp/aib-rehearsal-setup.sh";
        self.put_file(SETUP_SCRIPT.as_bytes(), path, 0o755, false)
            .await?;
        let output = self
            .command(path, "root")
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot enter the rehearsal environment")?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!(
                "preparing the rehearsal environment failed:\n{}",
                log.trim()
            );
        }
        if let Kind::Chroot { root, uid, gid, .. } = &mut self.kind {
            let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
            let fields: Vec<&str> = passwd
                .lines()
                .find(|l| l.starts_with("packer:"))
                .ok_or_else(|| anyhow!("the user packer was not created"))?
                .split(':')
                .collect();
            *uid = fields.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
            *gid = fields.get(3).and_then(|v| v.parse().ok()).unwrap_or(1000);
        }
        Ok(log)
    }

    /// Puts `contents` at `destination` inside the environment with `mode`, owned by the
    /// steps' user when `as_user` (as Packer uploads files), else by root.
    pub async fn put_file(
        &self,
        contents: &[u8],
        destination: &str,
        mode: u32,
        as_user: bool,
    ) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        if !destination.starts_with('/') {
            bail!("'{destination}' is not an absolute path");
        }
        match &self.kind {
            Kind::Chroot { root, uid, gid, .. } => {
                let path = inside(root, destination)?;
                no_link_on_the_way(root, &path)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, contents)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                if as_user {
                    std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))?;
                }
                Ok(())
            }
            Kind::Container { engine, name } => {
                let host = self
                    .staging
                    .path()
                    .join(uuid::Uuid::new_v4().simple().to_string());
                std::fs::write(&host, contents)?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))?;
                let engine = *engine;
                let mut parent = destination.rsplit_once('/').map_or("/", |(p, _)| p);
                if parent.is_empty() {
                    parent = "/";
                }
                run_quiet(engine, &["exec", name, "mkdir", "-p", parent]).await?;
                run_quiet(engine, &container_copy_args(name, &host, destination)).await?;
                let owner = if as_user { "packer:packer" } else { "0:0" };
                run_quiet(engine, &["exec", name, "chown", owner, destination]).await?;
                run_quiet(
                    engine,
                    &["exec", name, "chmod", &format!("{mode:o}"), destination],
                )
                .await?;
                let _ = std::fs::remove_file(host);
                Ok(())
            }
        }
    }

    /// The command that runs `script` (inside the environment) as `user` in its home folder,
    /// standard error joined to standard output. Killing it ends the step.
    pub fn command(&self, script: &str, user: &str) -> tokio::process::Command {
        let home = if user == "root" { "/root" } else { HOME };
        let mut command = match &self.kind {
            Kind::Container { engine, name } => {
                let mut c = tokio::process::Command::new(engine.program());
                c.args(container_exec_args(name, user, home, script));
                c
            }
            Kind::Chroot { root, .. } => {
                let mut c = tokio::process::Command::new("unshare");
                c.args(chroot_step_args(root, user, home, script));
                c
            }
        };
        command.kill_on_drop(true);
        command
    }

    /// Removes the container or the root filesystem's copy.
    pub async fn teardown(mut self) -> Result<()> {
        self.torn_down = true;
        if let Kind::Container { engine, name } = &self.kind {
            run_quiet(*engine, &container_remove_args(name)).await?;
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Kind::Container { engine, name } = &self.kind {
            let _ = std::process::Command::new(engine.program())
                .args(container_remove_args(name))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `destination` under `root`, refusing `..` (a path from a customizers file).
/// Refuses a path whose folders under `root` include a symbolic link: the task writes as the
/// host's root, and a link a step left (`/tmp -> /etc`) would lead the write out of the chroot.
fn no_link_on_the_way(root: &Path, path: &Path) -> Result<()> {
    let Ok(relative) = path.strip_prefix(root) else {
        bail!("'{}' is not inside the root filesystem", path.display());
    };
    let mut at = root.to_owned();
    let parts: Vec<_> = relative.components().collect();
    for (n, part) in parts.iter().enumerate() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            // The file itself may be a link: it is removed, not followed.
            Ok(m) if m.file_type().is_symlink() && n + 1 < parts.len() => bail!(
                "'{}' is a symbolic link made inside the rehearsal; the task does not write through it",
                at.strip_prefix(root)
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or_default()
            ),
            Ok(_) => {}
            Err(_) => break, // not there yet: created as a plain folder
        }
    }
    Ok(())
}

fn inside(root: &Path, destination: &str) -> Result<PathBuf> {
    let relative = destination.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        bail!("'{destination}' leaves the root filesystem");
    }
    Ok(root.join(relative))
}

async fn run_quiet<S: AsRef<std::ffi::OsStr>>(engine: Engine, args: &[S]) -> Result<()> {
    let output = tokio::process::Command::new(engine.program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", engine.program()))?;
    if !output.status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!(
            "{} {} failed: {}",
            engine.program(),
            shown.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Makes the root filesystem of `suite` with `debootstrap` into `target` (through a temporary
/// folder beside it, renamed when complete, so a broken run leaves no half cache). Output goes
/// to `log` line by line.
pub async fn create_rootfs(
    suite: &str,
    mirror: Option<&str>,
    target: &Path,
    log: impl Fn(&str),
) -> Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| anyhow!("no folder for {}", target.display()))?;
    std::fs::create_dir_all(parent)?;
    let partial = parent.join(format!(
        ".{}-partial-{}",
        target.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    let mut child = tokio::process::Command::new("debootstrap")
        .args(debootstrap_args(suite, &partial, mirror))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run debootstrap: install it (apt-get install debootstrap)")?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    spawn_lines(stdout, tx.clone());
    spawn_lines(stderr, tx);
    let mut tail = Vec::new();
    while let Some(line) = rx.recv().await {
        log(&line);
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        bail!(
            "debootstrap {suite} failed ({status}):\n{}",
            tail.join("\n")
        );
    }
    std::fs::rename(&partial, target)?;
    Ok(())
}

/// Sends each line read from `reader` to `tx` (lossy UTF-8), in a task of its own.
pub fn spawn_lines<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: Option<R>,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) {
    use tokio::io::AsyncBufReadExt as _;
    let Some(reader) = reader else { return };
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(reader);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_wins_unless_the_variable_says_chroot() {
        assert_eq!(
            choose(None, Some(Engine::Docker)).unwrap(),
            Choice::Container(Engine::Docker)
        );
        assert_eq!(choose(Some("auto"), None).unwrap(), Choice::Chroot);
        assert_eq!(
            choose(Some("chroot"), Some(Engine::Podman)).unwrap(),
            Choice::Chroot
        );
        assert!(choose(Some("container"), None).is_err());
        assert!(choose(Some("vm"), None).is_err());
    }

    #[test]
    fn container_arguments() {
        let run = container_run_args("ubuntu:22.04", "aib-rehearsal-x");
        assert_eq!(
            run.join(" "),
            "run --detach --rm --name aib-rehearsal-x --network host --label aib-task.rehearsal=true --entrypoint sleep ubuntu:22.04 14400"
        );
        let exec = container_exec_args("aib-rehearsal-x", USER, HOME, "/tmp/script_3.sh");
        assert_eq!(
            &exec[..5],
            ["exec", "--user", "packer", "--workdir", "/home/packer"]
        );
        assert!(exec.contains(&"HOME=/home/packer".to_owned()));
        assert_eq!(
            &exec[exec.len() - 4..],
            ["/bin/sh", "-c", r#"exec "$0" 2>&1"#, "/tmp/script_3.sh"]
        );
        let root_exec = container_exec_args("c", "root", "/root", "/tmp/s.sh");
        assert!(root_exec.contains(&"HOME=/root".to_owned()));
        assert_eq!(
            container_copy_args("c", Path::new("/host/f"), "/tmp/a b.zip"),
            ["cp", "/host/f", "c:/tmp/a b.zip"]
        );
        assert_eq!(container_remove_args("c"), ["rm", "--force", "c"]);
    }

    #[test]
    fn chroot_steps_get_their_own_namespaces_and_die_with_unshare() {
        let args = chroot_step_args(Path::new("/tmp/r/root"), USER, HOME, "/tmp/script_1.sh");
        for flag in ["--mount", "--pid", "--fork", "--kill-child", "--uts"] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
        }
        assert_eq!(
            &args[args.len() - 4..],
            ["/tmp/r/root", "packer", "/home/packer", "/tmp/script_1.sh"]
        );
        assert!(CHROOT_ENTER.contains("--userspec=\"$user:$user\""));
        assert!(CHROOT_ENTER.contains("env -i"));
        assert!(
            !CHROOT_ENTER.contains("exec chroot"),
            "the namespace's first process must stay root to keep its parent-death signal"
        );
    }

    #[test]
    fn debootstrap_and_the_cache() {
        assert_eq!(
            debootstrap_args("bookworm", Path::new("/c/x"), None),
            [
                "--variant=minbase",
                "--include=sudo,curl,ca-certificates,python3",
                "bookworm",
                "/c/x",
            ]
        );
        assert_eq!(
            debootstrap_args(
                "jammy",
                Path::new("/c/j"),
                Some("http://mirror.example/ubuntu")
            )
            .last()
            .unwrap(),
            "http://mirror.example/ubuntu"
        );
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            rootfs_cache_dir(env(&[("AIB_REHEARSAL_ROOTFS_DIR", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x")
        );
        assert_eq!(
            rootfs_cache_dir(env(&[("AGENT_TOOLSDIRECTORY", "/t"), ("HOME", "/h")])),
            PathBuf::from("/t/aib-task/rehearsal-rootfs")
        );
        assert_eq!(
            rootfs_cache_dir(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/aib-task/rehearsal-rootfs")
        );
        assert_eq!(
            rootfs_path(Path::new("/x"), "bookworm"),
            PathBuf::from("/x/bookworm-minbase")
        );
    }

    #[test]
    fn scripts_test_prepares_the_same_root_filesystem() {
        let script =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test"))
                .unwrap();
        assert!(
            script.contains(ROOTFS_PACKAGES),
            "scripts/test must debootstrap with --include={ROOTFS_PACKAGES}"
        );
    }

    #[test]
    fn writes_never_follow_a_link_a_step_made() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("opt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("tmp")).unwrap();
        let through = inside(root.path(), "/tmp/webapp.zip").unwrap();
        let e = no_link_on_the_way(root.path(), &through)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'/tmp' is a symbolic link"), "{e}");
        let plain = inside(root.path(), "/opt/app/new/file").unwrap();
        assert!(no_link_on_the_way(root.path(), &plain).is_ok());
        // A link as the file itself is replaced, not followed.
        std::os::unix::fs::symlink(outside.path(), root.path().join("opt/link")).unwrap();
        let file = inside(root.path(), "/opt/link").unwrap();
        assert!(no_link_on_the_way(root.path(), &file).is_ok());
    }

    #[test]
    fn paths_stay_inside_the_root() {
        assert_eq!(
            inside(Path::new("/r"), "/tmp/a.zip").unwrap(),
            PathBuf::from("/r/tmp/a.zip")
        );
        assert!(inside(Path::new("/r"), "/tmp/../../etc/passwd").is_err());
    }
}
