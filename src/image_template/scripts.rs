//! The scripts that bring the build artifacts onto the build VM, as the `inline` lines of Shell
//! (Linux) and PowerShell (Windows) customizers: download with retries, SHA-256 check,
//! extraction, and removal. Pure text generation; [`super::build_template`] decides which
//! steps a template gets.
//!
//! Every value that comes from outside (the folder name, the download URL, the paths) is
//! quoted with [`shell_quote`] or [`powershell_quote`], so a build path named `_drop`,
//! `my app`, `it's $HOME` or `` `rm -rf` `` lands on the VM under exactly that name. Packer joins
//! a customizer's `inline` lines with newlines into one script file, so one logical script may
//! span several lines.
//!
//! The Linux scripts are POSIX `sh` (Image Builder runs them with `/bin/sh`, which is `dash` on
//! Ubuntu and Debian) and keep working under `sh -e`: every command that may fail is tested.
//! They need only what every marketplace Linux image has, and fall back where images differ:
//! curl, else wget, else python3 to download; `sha256sum`, else `shasum`, else python3 to
//! check; `unzip`, else python3's `zipfile` (restoring the Unix modes the archive carries) to
//! extract — Ubuntu images have no `unzip`.

/// Where the archive and the extracted folder live on the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPaths {
    /// The folder the artifacts are copied into (`/tmp`, `C:\buildArtifacts`).
    pub root: String,
    /// The downloaded archive: `<root>/<folder>.zip`.
    pub zip: String,
    /// The extracted build path: `<root>/<folder>`.
    pub dir: String,
}

impl VmPaths {
    /// `root` with `/` separators (Linux).
    pub fn linux(root: &str, folder: &str) -> VmPaths {
        let root = root.trim_end_matches('/');
        VmPaths {
            root: root.to_owned(),
            zip: format!("{root}/{folder}.zip"),
            dir: format!("{root}/{folder}"),
        }
    }

    /// `root` with `\` separators (Windows).
    pub fn windows(root: &str, folder: &str) -> VmPaths {
        let root = root.trim_end_matches('\\');
        VmPaths {
            root: root.to_owned(),
            zip: format!("{root}\\{folder}.zip"),
            dir: format!("{root}\\{folder}"),
        }
    }
}

/// The downloaded archive and how to check it.
#[derive(Clone, Copy, Debug)]
pub struct Download<'a> {
    /// The URL with its read-only SAS (a secret).
    pub url: &'a str,
    /// Lower-case hex SHA-256 of the archive.
    pub sha256_hex: &'a str,
    pub size: u64,
}

/// How many times a download is tried before the step fails.
pub const DOWNLOAD_ATTEMPTS: u32 = 5;

/// Quotes `value` as one word for POSIX shells: inside single quotes nothing is special, and a
/// single quote is written as `'\''` (close, escaped quote, reopen).
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Quotes `value` as a PowerShell verbatim string. PowerShell treats the typographic quotes
/// `‘ ’ ‚ ‛` as single quotes too, so each of them is doubled like `'`.
pub fn powershell_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// Writes `value` as a PowerShell expression made of ASCII only: a verbatim string, with each
/// character beyond ASCII spliced in as `[char]0x…` (UTF-16 units). Packer writes inline lines
/// to a `.ps1` file without a byte order mark, which Windows PowerShell 5.1 reads in the
/// system's ANSI code page, so a literal `ü` in a path would come out as `Ã¼`.
pub fn powershell_string(value: &str) -> String {
    if value.is_ascii() {
        return powershell_quote(value);
    }
    // Starting from '' makes every `+` a string concatenation.
    let mut parts = vec!["''".to_owned()];
    let mut ascii = String::new();
    for c in value.chars() {
        if c.is_ascii() {
            ascii.push(c);
            continue;
        }
        if !ascii.is_empty() {
            parts.push(powershell_quote(&std::mem::take(&mut ascii)));
        }
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            parts.push(format!("[char]0x{unit:04X}"));
        }
    }
    if !ascii.is_empty() {
        parts.push(powershell_quote(&ascii));
    }
    format!("({})", parts.join(" + "))
}

/// The URL as the scripts carry it: ASCII only, and without the characters that would end a
/// quoted word or a URL found in a log (`'`, `"`, `` ` ``, `|`, `<`, `>`, `\`, whitespace and
/// other controls) or that curl reads as a glob (`[ ] { }`; the scripts also pass `--globoff`).
/// Those are percent-encoded (UTF-8), which the server reads the same way.
pub fn script_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c.is_ascii_graphic()
            && !matches!(
                c,
                '\'' | '"' | '`' | '|' | '<' | '>' | '\\' | '[' | ']' | '{' | '}'
            )
        {
            out.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The `inline` entries of a script (split on `\n` only, so a quoted value keeps any `\r`).
fn lines(text: &str) -> Vec<String> {
    text.split('\n').map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Linux (POSIX sh).

/// Downloads the archive to `paths.zip` (curl, else wget, else python3; up to
/// [`DOWNLOAD_ATTEMPTS`] tries) and checks its SHA-256; a damaged download is deleted and fails
/// the step.
pub fn linux_download(download: &Download, paths: &VmPaths) -> Vec<String> {
    let url = shell_quote(&script_url(download.url));
    let zip = shell_quote(&paths.zip);
    let sha = shell_quote(download.sha256_hex);
    let size = download.size;
    let attempts = DOWNLOAD_ATTEMPTS;
    lines(&format!(
        r#"url={url}
zip={zip}
expected={sha}
echo "aib-task: downloading the build artifacts ({size} bytes) to $zip"
fetch() {{
  rm -f -- "$zip"
  if command -v curl >/dev/null 2>&1; then
    curl -gfsSL --connect-timeout 30 --speed-limit 1024 --speed-time 120 -o "$zip" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=1 --timeout=60 -O "$zip" "$url"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import shutil, sys, urllib.request; r = urllib.request.urlopen(sys.argv[1], timeout=60); f = open(sys.argv[2], "wb"); shutil.copyfileobj(r, f, 1048576); f.close()' "$url" "$zip"
  else
    echo "aib-task: cannot download the build artifacts: none of curl, wget or python3 is installed" >&2
    exit 1
  fi
}}
attempt=1
until fetch; do
  if [ "$attempt" -ge {attempts} ]; then
    echo "aib-task: downloading the build artifacts failed {attempts} times; giving up" >&2
    exit 1
  fi
  echo "aib-task: download attempt $attempt failed; trying again in $((attempt * 10)) seconds" >&2
  sleep $((attempt * 10))
  attempt=$((attempt + 1))
done
if command -v sha256sum >/dev/null 2>&1; then
  actual=$(sha256sum < "$zip" | cut -c1-64)
elif command -v shasum >/dev/null 2>&1; then
  actual=$(shasum -a 256 < "$zip" | cut -c1-64)
elif command -v python3 >/dev/null 2>&1; then
  actual=$(python3 -c 'import hashlib, sys; h = hashlib.sha256(); f = open(sys.argv[1], "rb"); [h.update(b) for b in iter(lambda: f.read(1048576), b"")]; print(h.hexdigest())' "$zip")
else
  echo "aib-task: cannot check the build artifacts: none of sha256sum, shasum or python3 is installed" >&2
  exit 1
fi
if [ "$actual" != "$expected" ]; then
  echo "aib-task: the downloaded build artifacts are damaged: SHA-256 $actual, expected $expected" >&2
  rm -f -- "$zip"
  exit 1
fi
echo "aib-task: downloaded $zip (SHA-256 $expected)""#
    ))
}

/// Python that extracts a zip like `unzip` does: names made safe by `zipfile`, then the Unix
/// permission bits (without the set-id and sticky bits, as `unzip` without `-K`) from each entry's
/// external attributes, directories last and deepest first so a read-only folder is filled
/// before it is closed. No single quotes: it travels inside a single-quoted shell word.
const PYTHON_EXTRACT: &str = r#"
import os, sys, zipfile
source, target = sys.argv[1], sys.argv[2]
folders = []
with zipfile.ZipFile(source) as archive:
    for entry in archive.infolist():
        path = archive.extract(entry, target)
        mode = (entry.external_attr >> 16) & 0o777
        if entry.filename.endswith("/"):
            folders.append((path, mode))
        elif mode:
            os.chmod(path, mode)
for path, mode in reversed(folders):
    if mode:
        os.chmod(path, mode)
"#;

/// Extracts `paths.zip` into `paths.dir` with `unzip`, else python3.
///
/// Info-ZIP `unzip` reads `[ ] * ?` in the archive's own name as a pattern over the files
/// beside it (`web[1].zip` opens `web1.zip` if there is one, `v*.zip` every match), and has
/// no option to turn that off: it is given a symbolic link whose name holds none of them.
pub fn linux_extract(paths: &VmPaths) -> Vec<String> {
    let zip = shell_quote(&paths.zip);
    let dir = shell_quote(&paths.dir);
    let python = shell_quote(PYTHON_EXTRACT);
    lines(&format!(
        r#"zip={zip}
dest={dir}
mkdir -p -- "$dest"
if command -v unzip >/dev/null 2>&1; then
  link="${{zip%/*}}/aib-task-unzip-$$.zip"
  if ! ln -sf -- "$zip" "$link"; then
    echo "aib-task: could not link $link to $zip for unzip" >&2
    exit 1
  fi
  status=0
  unzip -o -q "$link" -d "$dest" || status=$?
  rm -f -- "$link"
  if [ "$status" -gt 1 ]; then
    echo "aib-task: unzip could not extract $zip into $dest (exit code $status)" >&2
    exit 1
  fi
elif command -v python3 >/dev/null 2>&1; then
  if ! python3 -c {python} "$zip" "$dest"; then
    echo "aib-task: python3 could not extract $zip into $dest" >&2
    exit 1
  fi
else
  echo "aib-task: cannot extract the build artifacts: neither unzip nor python3 is installed" >&2
  exit 1
fi
echo "aib-task: the build artifacts are in $dest""#
    ))
}

/// Removes the extracted folder and the archive (with `sudo` when the user's script left files
/// only root may delete).
pub fn linux_cleanup(paths: &VmPaths) -> Vec<String> {
    let zip = shell_quote(&paths.zip);
    let dir = shell_quote(&paths.dir);
    lines(&format!(
        r#"if ! {{ sudo -n rm -rf -- {dir} {zip} 2>/dev/null || rm -rf -- {dir} {zip}; }}; then
  echo "aib-task: could not remove the build artifacts from the image" >&2
  exit 1
fi
echo "aib-task: removed the build artifacts from the image""#
    ))
}

// ---------------------------------------------------------------------------------------------
// Windows (Windows PowerShell 5.1 and later).

const PS_PRELUDE: &str =
    "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'";

/// Downloads the archive to `paths.zip` with `Invoke-WebRequest` (TLS 1.2, up to
/// [`DOWNLOAD_ATTEMPTS`] tries) and checks its SHA-256 with `Get-FileHash`. The download goes
/// to a fixed name first (`-OutFile` reads wildcards in a path) and is moved into place once
/// checked.
pub fn windows_download(download: &Download, paths: &VmPaths) -> Vec<String> {
    let url = powershell_quote(&script_url(download.url));
    let root = powershell_string(&paths.root);
    let zip = powershell_string(&paths.zip);
    let sha = powershell_quote(download.sha256_hex);
    let size = download.size;
    let attempts = DOWNLOAD_ATTEMPTS;
    lines(&format!(
        r#"{PS_PRELUDE}
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
$url = {url}
$root = {root}
$zip = {zip}
$expected = {sha}
$partial = Join-Path $root 'aib-task-download.partial'
[void][System.IO.Directory]::CreateDirectory($root)
Write-Host "aib-task: downloading the build artifacts ({size} bytes) to $zip"
for ($attempt = 1; ; $attempt++) {{
  try {{
    Invoke-WebRequest -Uri $url -OutFile $partial -UseBasicParsing
    break
  }} catch {{
    if ($attempt -ge {attempts}) {{
      Write-Host "aib-task: downloading the build artifacts failed {attempts} times; giving up: $($_.Exception.Message)"
      exit 1
    }}
    Write-Host "aib-task: download attempt $attempt failed ($($_.Exception.Message)); trying again in $(10 * $attempt) seconds"
    Start-Sleep -Seconds (10 * $attempt)
  }}
}}
$actual = (Get-FileHash -LiteralPath $partial -Algorithm SHA256).Hash.ToLowerInvariant()
if ($actual -ne $expected) {{
  Remove-Item -LiteralPath $partial -Force
  Write-Host "aib-task: the downloaded build artifacts are damaged: SHA-256 $actual, expected $expected"
  exit 1
}}
if (Test-Path -LiteralPath $zip) {{ Remove-Item -LiteralPath $zip -Force }}
[System.IO.File]::Move($partial, $zip)
Write-Host "aib-task: downloaded $zip (SHA-256 $expected)""#
    ))
}

/// Whether `path` can go on `tar.exe`'s command line. Windows' bsdtar reads its arguments in
/// the ANSI code page, so a name beyond ASCII comes out changed (`Ā` becomes `A`,
/// libarchive/libarchive issue 2092); Windows PowerShell 5.1 does not escape `"` in arguments
/// to native programs; control characters and `*`, `?` cannot be in Windows file names anyway.
fn tar_can_take(path: &str) -> bool {
    path.chars()
        .all(|c| c == ' ' || (c.is_ascii_graphic() && !matches!(c, '"' | '*' | '?')))
}

/// Extracts `paths.zip` into `paths.dir` with `tar.exe` where Windows has it (Windows Server
/// 2019 and Windows 10 1803 on), else with `Expand-Archive -Force`.
///
/// `tar.exe` (bsdtar, which reads zip archives) writes paths longer than `MAX_PATH`, which
/// Windows PowerShell 5.1's `Expand-Archive` cannot; it is called by its full path so that
/// another `tar` on the `PATH` (Git's GNU tar reads `C:` as a remote host) is not picked up,
/// and only for paths it can be given ([`tar_can_take`]). `Expand-Archive` reads wildcards in
/// its destination (it checks it with `Test-Path -Path`), so a folder whose name holds `[`,
/// `]`, `*` or `?` is extracted with .NET's `ZipFile.ExtractToDirectory` instead.
pub fn windows_extract(paths: &VmPaths) -> Vec<String> {
    let zip = powershell_string(&paths.zip);
    let dir = powershell_string(&paths.dir);
    let fallback = if paths.dir.contains(['[', ']', '*', '?']) {
        "Add-Type -AssemblyName System.IO.Compression.FileSystem\n    [System.IO.Compression.ZipFile]::ExtractToDirectory($zip, $dest)"
    } else {
        "Expand-Archive -LiteralPath $zip -DestinationPath $dest -Force"
    };
    let tar = if tar_can_take(&paths.zip) && tar_can_take(&paths.dir) {
        "Join-Path $env:SystemRoot 'System32\\tar.exe'"
    } else {
        "$null"
    };
    // Native programs' stderr lines become PowerShell errors when the output is redirected, as
    // Packer does: with 'Stop' a mere warning from tar would end the step, so its exit code
    // decides instead.
    lines(&format!(
        r#"{PS_PRELUDE}
$zip = {zip}
$dest = {dir}
$tar = {tar}
try {{
  if ($tar -and (Test-Path -LiteralPath $tar -PathType Leaf)) {{
    Write-Host "aib-task: extracting $zip with $tar"
    [void][System.IO.Directory]::CreateDirectory($dest)
    $ErrorActionPreference = 'Continue'
    & $tar -xf $zip -C $dest
    $status = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    if ($status -ne 0) {{
      Write-Host "aib-task: tar.exe could not extract $zip into $dest (exit code $status)"
      exit 1
    }}
  }} else {{
    {fallback}
  }}
}} catch {{
  Write-Host "aib-task: could not extract $zip into ${{dest}}: $($_.Exception.Message)"
  exit 1
}}
Write-Host "aib-task: the build artifacts are in $dest""#
    ))
}

/// Removes the extracted folder and the archive, and the root folder when nothing else is in it.
pub fn windows_cleanup(paths: &VmPaths) -> Vec<String> {
    let root = powershell_string(&paths.root);
    let zip = powershell_string(&paths.zip);
    let dir = powershell_string(&paths.dir);
    lines(&format!(
        r#"{PS_PRELUDE}
$root = {root}
try {{
  foreach ($path in @({dir}, {zip})) {{
    if (Test-Path -LiteralPath $path) {{ Remove-Item -LiteralPath $path -Recurse -Force }}
  }}
  if ((Test-Path -LiteralPath $root) -and -not (Get-ChildItem -LiteralPath $root -Force)) {{
    Remove-Item -LiteralPath $root -Force
  }}
}} catch {{
  Write-Host "aib-task: could not remove the build artifacts from the image: $($_.Exception.Message)"
  exit 1
}}
Write-Host "aib-task: removed the build artifacts from the image""#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_nasty_names() {
        assert_eq!(shell_quote("webapp"), "'webapp'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("''"), r"''\'''\'''");
        for nasty in [
            "my app",
            "_drop",
            "$HOME",
            "`id`",
            "$(id)",
            "a\\b",
            "x;y&&z|w",
            "*?[a]",
            "ünïcødé ✓",
            "-rf",
            "line\nbreak",
            "\"double\"",
        ] {
            let q = shell_quote(nasty);
            assert!(q.starts_with('\'') && q.ends_with('\''), "{q}");
            // Between the outer quotes, a quote only ever appears as '\''.
            let inner = &q[1..q.len() - 1];
            assert_eq!(inner.replace(r"'\''", ""), nasty.replace('\'', ""));
        }
    }

    #[test]
    fn powershell_quoting_doubles_every_single_quote_form() {
        assert_eq!(powershell_quote("webapp"), "'webapp'");
        assert_eq!(powershell_quote("it's"), "'it''s'");
        assert_eq!(powershell_quote("$env:TEMP `n"), "'$env:TEMP `n'");
        assert_eq!(powershell_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(
            powershell_quote("\u{2018}\u{201A}\u{201B}"),
            "'\u{2018}\u{2018}\u{201A}\u{201A}\u{201B}\u{201B}'"
        );
        assert_eq!(
            powershell_quote(r"C:\buildArtifacts\my app"),
            r"'C:\buildArtifacts\my app'"
        );
    }

    #[test]
    fn powershell_strings_are_ascii_only() {
        assert_eq!(powershell_string(r"C:\x\it's"), r"'C:\x\it''s'");
        assert_eq!(
            powershell_string(r"C:\b\ünï's"),
            r"('' + 'C:\b\' + [char]0x00FC + 'n' + [char]0x00EF + '''s')"
        );
        // Beyond the BMP: a surrogate pair. A typographic quote is spliced in like any other
        // character, so it cannot end the string.
        assert_eq!(
            powershell_string("\u{1F600}\u{2019}"),
            "('' + [char]0xD83D + [char]0xDE00 + [char]0x2019)"
        );
        assert!(powershell_string("日本語 ‘x’").is_ascii());
    }

    #[test]
    fn script_urls_have_nothing_that_ends_a_word() {
        assert_eq!(
            script_url("https://a.blob.core.windows.net/c/it's|x y`ü.zip?sv=1&sig=a%2B"),
            "https://a.blob.core.windows.net/c/it%27s%7Cx%20y%60%C3%BC.zip?sv=1&sig=a%2B"
        );
        // curl's glob characters.
        assert_eq!(
            script_url("https://a/c/web[1]{x}/]a[}{.zip?sig=b"),
            "https://a/c/web%5B1%5D%7Bx%7D/%5Da%5B%7D%7B.zip?sig=b"
        );
    }

    #[test]
    fn windows_extraction_avoids_expand_archive_wildcards() {
        let plain = windows_extract(&VmPaths::windows(r"C:\buildArtifacts", "_drop 1"));
        assert!(plain.contains(
            &"    Expand-Archive -LiteralPath $zip -DestinationPath $dest -Force".to_owned()
        ));
        let wild = windows_extract(&VmPaths::windows(r"C:\buildArtifacts", "drop[1]"));
        assert!(!wild.join("\n").contains("Expand-Archive"));
        assert!(wild.contains(
            &"    [System.IO.Compression.ZipFile]::ExtractToDirectory($zip, $dest)".to_owned()
        ));
    }

    #[test]
    fn windows_extraction_prefers_tar_and_checks_its_exit_code() {
        let script = windows_extract(&VmPaths::windows(r"C:\buildArtifacts", "web app[1]"));
        for line in [
            r"$tar = Join-Path $env:SystemRoot 'System32\tar.exe'",
            "  if ($tar -and (Test-Path -LiteralPath $tar -PathType Leaf)) {",
            "    [void][System.IO.Directory]::CreateDirectory($dest)",
            "    $ErrorActionPreference = 'Continue'",
            "    & $tar -xf $zip -C $dest",
            "    $status = $LASTEXITCODE",
            "    $ErrorActionPreference = 'Stop'",
            "    if ($status -ne 0) {",
            "      Write-Host \"aib-task: tar.exe could not extract $zip into $dest (exit code $status)\"",
            "      exit 1",
            "  } else {",
        ] {
            assert!(
                script.contains(&line.to_owned()),
                "{line}\n{}",
                script.join("\n")
            );
        }
        // tar first, the fallback in the else branch.
        let joined = script.join("\n");
        assert!(joined.find("& $tar").unwrap() < joined.find("ExtractToDirectory").unwrap());
    }

    #[test]
    fn tar_is_not_given_names_its_command_line_would_change() {
        for folder in ["webapp", "my app", "a[b]{c}$d'e`f;g&h", "-rf"] {
            let script = windows_extract(&VmPaths::windows(r"C:\buildArtifacts", folder));
            assert!(
                script.contains(&r"$tar = Join-Path $env:SystemRoot 'System32\tar.exe'".to_owned()),
                "{folder}"
            );
            assert!(tar_can_take(folder), "{folder}");
        }
        for folder in [
            "ünï",
            "\u{100}",
            "日本",
            "say \"hi\"",
            "tab\there",
            "line\nbreak",
        ] {
            let script = windows_extract(&VmPaths::windows(r"C:\buildArtifacts", folder));
            assert!(script.contains(&"$tar = $null".to_owned()), "{folder}");
            assert!(
                script.contains(
                    &"    Expand-Archive -LiteralPath $zip -DestinationPath $dest -Force"
                        .to_owned()
                ),
                "{folder}"
            );
        }
    }

    #[test]
    fn windows_scripts_are_ascii_whatever_the_folder() {
        let paths = VmPaths::windows(r"C:\buildArtifacts", "ünï ✓ 日本");
        let download = Download {
            url: "https://a/ü.zip?sig=x",
            sha256_hex: "00",
            size: 1,
        };
        for script in [
            windows_download(&download, &paths),
            windows_extract(&paths),
            windows_cleanup(&paths),
        ] {
            for line in &script {
                assert!(line.is_ascii(), "{line}");
            }
        }
    }

    #[test]
    fn paths_join_with_the_os_separator() {
        let l = VmPaths::linux("/tmp/", "my app");
        assert_eq!(l.zip, "/tmp/my app.zip");
        assert_eq!(l.dir, "/tmp/my app");
        let w = VmPaths::windows(r"C:\buildArtifacts", "_drop");
        assert_eq!(w.zip, r"C:\buildArtifacts\_drop.zip");
        assert_eq!(w.dir, r"C:\buildArtifacts\_drop");
    }

    #[test]
    fn the_extract_snippet_fits_in_single_quotes() {
        assert!(!PYTHON_EXTRACT.contains('\''));
    }
}
