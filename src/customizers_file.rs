//! The `customizersFile` input: a JSON file on the agent holding an array of Image Builder
//! customizers (api-version [`image_template::API_VERSION`]) that run after the user's inline
//! script. This module owns reading that file ([`load`], the only I/O) and checking it against
//! the API's customizer schema ([`parse`], pure), so that a bad file fails with every problem at
//! once, each at its JSON path (`$[2].inline[0]`), before any Azure write. What it returns is the
//! template's own [`Customizer`] model; where the steps go in the template is
//! `image_template`'s business, and the caller turns a [`CustomizersFileError`] into
//! [`InputError`]s for [`INPUT`].
//!
//! The checks follow the swagger definitions `ImageTemplateCustomizer` and its five subtypes
//! (`imagebuilder.json`, 2024-02-01), plus the rules the swagger states only in prose (exactly
//! one of `inline` or `scriptUri`; `runAsSystem` only with `runElevated`; which system each type
//! runs on) and a few the Packer provisioners behind the types impose (`restartTimeout` is a Go
//! duration; `filters` start with `include:` or `exclude:`). An empty array is accepted and adds
//! nothing, so a pipeline can keep the input set while it has no extra steps.
//!
//! The file may hold SAS URLs (`scriptUri`, `sourceUri`): messages never echo a URL, and every
//! message goes through [`image_template::redact_text`] as well.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use serde_json::{Map, Value};
use url::Url;

use crate::image_template::{self, Customizer};
use crate::inputs::InputError;
use crate::plan::Os;

/// The task input this module reads.
pub const INPUT: &str = "customizersFile";

/// The largest file read: far above any sensible list of steps (a template body, customizers
/// and all, goes to ARM in one request), small enough to refuse a wrong file (an archive, a
/// log) at once instead of parsing it.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Step names starting with this are the task's own (see `image_template::step`).
pub const RESERVED_NAME_PREFIX: &str = "aib-task-";

/// At most this many problems are listed in messages; the rest are counted.
const MAX_LISTED_PROBLEMS: usize = 20;

/// One problem in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the offending value, e.g. `$[1].scriptUri`; `$` for the whole document,
    /// empty for problems with the file itself (unreadable, not JSON).
    pub path: String,
    /// What is wrong and the expected form. Never a URL from the file.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem {
            path: path.into(),
            // Belt and braces: no message quotes a URL, but a stray `sig=` must never reach a log.
            message: image_template::redact_text(&message).into_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything wrong with a customizers file (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CustomizersFileError {
    pub problems: Vec<Problem>,
}

impl CustomizersFileError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> CustomizersFileError {
        CustomizersFileError {
            problems: vec![Problem::new(path, message)],
        }
    }

    /// One [`InputError`] for [`INPUT`] per problem (the first [`MAX_LISTED_PROBLEMS`], then a
    /// count), so each gets its own error line in the pipeline log.
    pub fn input_errors(&self) -> Vec<InputError> {
        let mut errors: Vec<InputError> = self
            .problems
            .iter()
            .take(MAX_LISTED_PROBLEMS)
            .map(|p| InputError::new(INPUT, p.to_string()))
            .collect();
        if let Some(more) = self.unlisted() {
            errors.push(InputError::new(INPUT, more));
        }
        errors
    }

    fn unlisted(&self) -> Option<String> {
        let more = self.problems.len().saturating_sub(MAX_LISTED_PROBLEMS);
        (more > 0).then(|| format!("and {more} more problems in the file"))
    }
}

/// One line: `$[0].type: …; $[2].inline[0]: …`, with a count first when there are several.
impl fmt::Display for CustomizersFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.len() > 1 {
            write!(f, "{} problems: ", self.problems.len())?;
        }
        for (i, problem) in self.problems.iter().take(MAX_LISTED_PROBLEMS).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        if let Some(more) = self.unlisted() {
            write!(f, "; {more}")?;
        }
        Ok(())
    }
}

/// The whole error as one [`InputError`] for [`INPUT`].
impl From<CustomizersFileError> for InputError {
    fn from(error: CustomizersFileError) -> InputError {
        InputError::new(INPUT, error.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// The customizer types, defined once.

/// A customizer type of the 2024-02-01 API (`x-ms-discriminator-value` of each subtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shell,
    PowerShell,
    File,
    WindowsRestart,
    WindowsUpdate,
}

const KINDS: [Kind; 5] = [
    Kind::Shell,
    Kind::PowerShell,
    Kind::File,
    Kind::WindowsRestart,
    Kind::WindowsUpdate,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Shell => "Shell",
            Kind::PowerShell => "PowerShell",
            Kind::File => "File",
            Kind::WindowsRestart => "WindowsRestart",
            Kind::WindowsUpdate => "WindowsUpdate",
        }
    }

    /// Every property of the subtype, the base's `type` and `name` first (swagger `properties`
    /// of the subtype plus those of `ImageTemplateCustomizer`).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Shell => &["type", "name", "inline", "scriptUri", "sha256Checksum"],
            Kind::PowerShell => &[
                "type",
                "name",
                "inline",
                "scriptUri",
                "sha256Checksum",
                "runElevated",
                "runAsSystem",
                "validExitCodes",
            ],
            Kind::File => &["type", "name", "sourceUri", "destination", "sha256Checksum"],
            Kind::WindowsRestart => &[
                "type",
                "name",
                "restartCommand",
                "restartCheckCommand",
                "restartTimeout",
            ],
            Kind::WindowsUpdate => &["type", "name", "searchCriteria", "filters", "updateLimit"],
        }
    }

    /// The one system the type runs on, per the swagger descriptions ("Runs a shell script
    /// during the customization phase (Linux)", "… PowerShell on the VM (Windows)", "Reboots a
    /// VM … (Windows)", "Installs Windows Updates"); `None` for File ("Linux, Windows").
    fn only_on(self) -> Option<Os> {
        match self {
            Kind::Shell => Some(Os::Linux),
            Kind::PowerShell | Kind::WindowsRestart | Kind::WindowsUpdate => Some(Os::Windows),
            Kind::File => None,
        }
    }
}

/// The customizer types the file may use, as the API spells them.
pub fn types() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// Every field a customizer of `type_name` may have (including `type` and `name`); `None` for
/// an unknown type. The integration tests compare this table with the swagger.
pub fn allowed_fields(type_name: &str) -> Option<&'static [&'static str]> {
    KINDS
        .iter()
        .find(|k| k.name() == type_name)
        .map(|k| k.fields())
}

// ---------------------------------------------------------------------------------------------
// Reading and parsing.

/// Reads the customizers file at `path` and checks it for a build on `os`.
pub fn load(path: &Path, os: Os) -> Result<Vec<Customizer>, CustomizersFileError> {
    let shown = path.display();
    let cannot = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        };
        CustomizersFileError::one("", format!("cannot read '{shown}': {why}"))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if metadata.is_dir() {
        return Err(CustomizersFileError::one(
            "",
            format!("'{shown}' is a folder; expected a JSON file"),
        ));
    }
    let too_large = || {
        CustomizersFileError::one(
            "",
            format!(
                "'{shown}' is larger than {MAX_FILE_BYTES} bytes; expected a JSON array of customizers"
            ),
        )
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    // Read at most one byte past the limit: a pipe or device has no meaningful length.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let text =
        decode(&bytes).map_err(|why| CustomizersFileError::one("", format!("'{shown}' {why}")))?;
    parse(text, os)
}

/// The file's text: UTF-8 only, as ARM takes JSON.
fn decode(bytes: &[u8]) -> Result<&str, String> {
    // Windows PowerShell 5.1 writes UTF-16 with `>` and `Out-File`: say so rather than "not JSON".
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(
            "is UTF-16 text (as Windows PowerShell's `>` and `Out-File` write); save it as UTF-8"
                .into(),
        );
    }
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            e.valid_up_to()
        )
    })
}

/// Checks the text of a customizers file for a build on `os` and returns its customizers in
/// order, or every problem found.
pub fn parse(text: &str, os: Os) -> Result<Vec<Customizer>, CustomizersFileError> {
    // Editors on Windows often save UTF-8 with a byte order mark, which JSON parsers refuse.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(CustomizersFileError::one(
            "",
            format!("is larger than {MAX_FILE_BYTES} bytes; expected a JSON array of customizers"),
        ));
    }
    if text.trim().is_empty() {
        return Err(CustomizersFileError::one(
            "",
            "is empty; expected a JSON array of customizers ([] for none)",
        ));
    }
    let document: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's syntax messages name the problem, never the text around it.
        let message = e.to_string();
        let what = message
            .rfind(" at line ")
            .map_or(message.as_str(), |at| &message[..at]);
        CustomizersFileError::one(
            "",
            format!(
                "is not valid JSON: {what} at line {}, column {}",
                e.line(),
                e.column()
            ),
        )
    })?;
    check(&document, os)
}

/// Checks a parsed document: an array of customizer objects.
fn check(document: &Value, os: Os) -> Result<Vec<Customizer>, CustomizersFileError> {
    let Value::Array(items) = document else {
        return Err(CustomizersFileError::one("$", not_an_array(document)));
    };
    let mut checker = Checker {
        os,
        problems: Vec::new(),
        names: HashMap::new(),
    };
    for (index, item) in items.iter().enumerate() {
        checker.item(index, item);
    }
    if !checker.problems.is_empty() {
        return Err(CustomizersFileError {
            problems: checker.problems,
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            // The checks above admit exactly what the model reads; a failure here is a gap in
            // them, reported rather than unwrapped.
            serde_json::from_value::<Customizer>(item.clone())
                .map(normalized)
                .map_err(|e| {
                    CustomizersFileError::one(format!("$[{index}]"), format!("cannot be read: {e}"))
                })
        })
        .collect()
}

/// The customizer with the swagger's `""` default of `sha256Checksum` dropped, as unset.
fn normalized(mut customizer: Customizer) -> Customizer {
    match &mut customizer {
        Customizer::Shell {
            sha256_checksum, ..
        }
        | Customizer::PowerShell {
            sha256_checksum, ..
        }
        | Customizer::File {
            sha256_checksum, ..
        } => {
            if sha256_checksum.as_deref() == Some("") {
                *sha256_checksum = None;
            }
        }
        Customizer::WindowsRestart { .. } | Customizer::WindowsUpdate { .. } => {}
    }
    customizer
}

fn not_an_array(document: &Value) -> String {
    let hint = match document {
        Value::Object(map) if map.contains_key("type") => {
            "; to add one customizer, put it in brackets: [{...}]"
        }
        Value::Object(map) if map.contains_key("properties") || map.contains_key("customize") => {
            "; give the array that a template's properties.customize holds, not the template"
        }
        _ => "",
    };
    format!(
        "expected a JSON array of customizers, found {}{hint}",
        json_kind(document)
    )
}

// ---------------------------------------------------------------------------------------------
// The checks.

struct Checker<'a> {
    os: Os,
    problems: Vec<Problem>,
    /// Names seen so far, with the index of the first customizer that has each.
    names: HashMap<&'a str, usize>,
}

impl<'a> Checker<'a> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn item(&mut self, index: usize, item: &'a Value) {
        let at = format!("$[{index}]");
        let Value::Object(map) = item else {
            self.push(
                at,
                format!(
                    "expected a customizer object such as {{\"type\": \"Shell\", \"inline\": [...]}}, found {}",
                    json_kind(item)
                ),
            );
            return;
        };
        if let Some(name) = map.get("name") {
            self.name(&at, index, name);
        }
        let Some(kind) = self.kind(&at, map) else {
            // Without a known type the allowed fields are unknown: nothing more to check.
            return;
        };
        if let Some(only) = kind.only_on()
            && only != self.os
        {
            let (wanted, alternative) = match only {
                Os::Linux => ("Linux", "use PowerShell"),
                Os::Windows => ("Windows", "it has no Linux counterpart"),
            };
            let alternative = if kind == Kind::PowerShell {
                "use Shell"
            } else {
                alternative
            };
            self.push(
                format!("{at}.type"),
                format!(
                    "{} customizers run on {wanted} only, but input 'provisioner' is {}; {alternative}",
                    kind.name(),
                    match self.os {
                        Os::Linux => "'shell' (Linux)",
                        Os::Windows => "'powershell' (Windows)",
                    }
                ),
            );
        }
        for key in map.keys() {
            if !kind.fields().contains(&key.as_str()) {
                self.push(field_path(&at, key), unknown_field(kind, key));
            }
        }
        match kind {
            Kind::Shell | Kind::PowerShell => self.script(&at, map),
            Kind::File => self.file(&at, map),
            Kind::WindowsRestart => self.restart(&at, map),
            Kind::WindowsUpdate => self.update(&at, map),
        }
        if kind == Kind::PowerShell {
            self.elevation(&at, map);
        }
    }

    /// `type`: required by `ImageTemplateCustomizer`, and the discriminator, so case matters.
    fn kind(&mut self, at: &str, map: &Map<String, Value>) -> Option<Kind> {
        let expected = format!("expected one of {}", types().join(", "));
        match map.get("type") {
            None => {
                self.push(format!("{at}.type"), format!("is required; {expected}"));
                None
            }
            Some(Value::String(s)) => {
                let kind = KINDS.iter().copied().find(|k| k.name() == s);
                if kind.is_none() {
                    let names = types();
                    let message = match suggestion(s, &names) {
                        Some(right) if right.eq_ignore_ascii_case(s) => format!(
                            "unknown customizer type {}; did you mean \"{right}\"? (types are case-sensitive)",
                            quoted(s)
                        ),
                        Some(right) => format!(
                            "unknown customizer type {}; did you mean \"{right}\"? ({expected})",
                            quoted(s)
                        ),
                        None => format!("unknown customizer type {}; {expected}", quoted(s)),
                    };
                    self.push(format!("{at}.type"), message);
                }
                kind
            }
            Some(other) => {
                self.push(
                    format!("{at}.type"),
                    format!("expected a string ({expected}), found {}", json_kind(other)),
                );
                None
            }
        }
    }

    /// `name`: optional; the task's own prefix is reserved, and each name is used once so that
    /// `customization.log` tells the steps apart.
    fn name(&mut self, at: &str, index: usize, value: &'a Value) {
        let path = format!("{at}.name");
        let Value::String(name) = value else {
            self.push(
                path,
                format!("expected a string, found {}", json_kind(value)),
            );
            return;
        };
        if name.is_empty() {
            return;
        }
        if name.to_ascii_lowercase().starts_with(RESERVED_NAME_PREFIX) {
            self.push(
                &path,
                format!(
                    "{} starts with '{RESERVED_NAME_PREFIX}', which is reserved for the task's own steps; choose another name",
                    quoted(name)
                ),
            );
        }
        match self.names.get(name.as_str()) {
            Some(first) => self.push(
                path,
                format!(
                    "{} is also the name of $[{first}]; expected names unique within the file",
                    quoted(name)
                ),
            ),
            None => {
                self.names.insert(name, index);
            }
        }
    }

    /// Shell and PowerShell: "Exactly one of 'scriptUri' or 'inline' can be specified"
    /// (swagger descriptions of both subtypes).
    fn script(&mut self, at: &str, map: &Map<String, Value>) {
        let inline = map.get("inline");
        let uri = map.get("scriptUri");
        if let Some(lines) = inline
            && self.strings(&format!("{at}.inline"), lines, "command line")
            && lines.as_array().is_some_and(Vec::is_empty)
        {
            self.push(
                format!("{at}.inline"),
                "is empty; expected at least one command line (or scriptUri instead)",
            );
        }
        if let Some(uri) = uri {
            self.url(&format!("{at}.scriptUri"), uri);
        }
        match (inline, uri) {
            (Some(_), Some(_)) => self.push(
                at,
                "has both inline and scriptUri; expected exactly one of them",
            ),
            (None, None) => self.push(
                at,
                "has neither inline nor scriptUri; expected exactly one: inline (an array of command lines) or scriptUri (the http(s) URL of a script)",
            ),
            _ => {}
        }
        self.checksum(at, map, "scriptUri");
    }

    /// PowerShell only.
    fn elevation(&mut self, at: &str, map: &Map<String, Value>) {
        let elevated = self.boolean(&format!("{at}.runElevated"), map.get("runElevated"));
        let system = self.boolean(&format!("{at}.runAsSystem"), map.get("runAsSystem"));
        // Swagger, runAsSystem: "Can only be true when the runElevated field above is set to true."
        if system == Some(true) && elevated != Some(true) {
            self.push(
                format!("{at}.runAsSystem"),
                "is true but runElevated is not; expected runElevated: true as well",
            );
        }
        if let Some(codes) = map.get("validExitCodes") {
            let path = format!("{at}.validExitCodes");
            let Value::Array(codes) = codes else {
                self.push(
                    path,
                    format!(
                        "expected an array of integers, such as [0, 3010], found {}",
                        json_kind(codes)
                    ),
                );
                return;
            };
            for (i, code) in codes.iter().enumerate() {
                // Swagger: items of type integer, format int32.
                let path = format!("{path}[{i}]");
                match code.as_i64() {
                    Some(n) if i32::try_from(n).is_ok() => {}
                    Some(n) if u32::try_from(n).is_ok() => self.push(
                        path,
                        format!(
                            "is outside the 32-bit signed range the API takes; write {} (the same exit code as a signed number)",
                            n as u32 as i32
                        ),
                    ),
                    Some(_) => self.push(path, "is outside the 32-bit signed integer range"),
                    None => self.push(
                        path,
                        format!("expected an integer exit code, found {}", number_or_kind(code)),
                    ),
                }
            }
        }
    }

    /// File: the model (and Image Builder, which has nothing to copy otherwise) needs both
    /// `sourceUri` and `destination`, although the swagger marks neither as required.
    fn file(&mut self, at: &str, map: &Map<String, Value>) {
        match map.get("sourceUri") {
            Some(uri) => self.url(&format!("{at}.sourceUri"), uri),
            None => self.push(
                format!("{at}.sourceUri"),
                "is required for a File customizer; expected the http(s) URL of the file to copy",
            ),
        }
        let path = format!("{at}.destination");
        let example = match self.os {
            Os::Linux => "/tmp/app.conf",
            Os::Windows => r"C:\buildArtifacts\app.conf",
        };
        match map.get("destination") {
            None => self.push(
                path,
                format!(
                    "is required for a File customizer; expected the absolute path of the file on the VM, such as {example}"
                ),
            ),
            Some(Value::String(d)) => {
                // Swagger: "The absolute path to a file … in the VM".
                let absolute = match self.os {
                    Os::Linux => d.starts_with('/'),
                    Os::Windows => {
                        let b = d.as_bytes();
                        b.len() >= 3
                            && b[0].is_ascii_alphabetic()
                            && b[1] == b':'
                            && matches!(b[2], b'\\' | b'/')
                    }
                };
                if !absolute {
                    self.push(
                        path,
                        format!(
                            "expected an absolute path of a file on the {} VM, such as {example}",
                            match self.os {
                                Os::Linux => "Linux",
                                Os::Windows => "Windows",
                            }
                        ),
                    );
                }
            }
            Some(other) => self.push(
                path,
                format!(
                    "expected a string (an absolute path such as {example}), found {}",
                    json_kind(other)
                ),
            ),
        }
        self.checksum(at, map, "sourceUri");
    }

    fn restart(&mut self, at: &str, map: &Map<String, Value>) {
        for field in ["restartCommand", "restartCheckCommand"] {
            if let Some(value) = map.get(field) {
                self.string(&format!("{at}.{field}"), value);
            }
        }
        if let Some(value) = map.get("restartTimeout") {
            let path = format!("{at}.restartTimeout");
            // Swagger: "a string of magnitude and unit, e.g. '5m' (5 minutes) or '2h'"; Packer's
            // windows-restart provisioner reads it with Go's time.ParseDuration.
            const FORM: &str =
                "a duration such as 5m, 2h, 30s or 1h30m (a number, then h, m, s or ms)";
            match value {
                Value::String(s) if duration_seconds(s).is_some_and(|d| d > 0.0) => {}
                Value::String(s) if duration_seconds(s).is_some() => {
                    self.push(path, format!("is zero; expected {FORM}"))
                }
                Value::String(s) => {
                    self.push(path, format!("expected {FORM}, found {}", quoted(s)))
                }
                other => self.push(
                    path,
                    format!("expected a string ({FORM}), found {}", json_kind(other)),
                ),
            }
        }
    }

    fn update(&mut self, at: &str, map: &Map<String, Value>) {
        if let Some(value) = map.get("searchCriteria") {
            self.string(&format!("{at}.searchCriteria"), value);
        }
        if let Some(filters) = map.get("filters") {
            let path = format!("{at}.filters");
            if self.strings(&path, filters, "filter")
                && let Some(filters) = filters.as_array()
            {
                for (i, filter) in filters.iter().enumerate() {
                    // The provisioner splits each filter at the first ':' and includes an update
                    // when the action is 'include', anything else excluding it
                    // (rgl/packer-plugin-windows-update, windows-update.ps1): a typo there
                    // would silently skip updates.
                    let s = filter.as_str().unwrap_or_default();
                    let action = s.split_once(':').map(|(a, _)| a);
                    if !action.is_some_and(|a| {
                        a.eq_ignore_ascii_case("include") || a.eq_ignore_ascii_case("exclude")
                    }) {
                        self.push(
                            format!("{path}[{i}]"),
                            "expected include:<expression> or exclude:<expression>, such as \"exclude:$_.Title -like '*Preview*'\" or \"include:$true\"",
                        );
                    }
                }
            }
        }
        if let Some(limit) = map.get("updateLimit") {
            // Swagger: integer, int32, minimum 0 (0: the default of 1000).
            let in_range = limit.as_u64().is_some_and(|n| i32::try_from(n).is_ok());
            if !in_range {
                self.push(
                    format!("{at}.updateLimit"),
                    format!(
                        "expected a whole number from 0 to {} (0: the default, 1000), found {}",
                        i32::MAX,
                        number_or_kind(limit)
                    ),
                );
            }
        }
    }

    /// `sha256Checksum`: 64 hex digits, or the swagger's default `""`; only with the URL it
    /// checks.
    fn checksum(&mut self, at: &str, map: &Map<String, Value>, url_field: &str) {
        let Some(value) = map.get("sha256Checksum") else {
            return;
        };
        let path = format!("{at}.sha256Checksum");
        let Value::String(sum) = value else {
            self.push(
                path,
                format!(
                    "expected a string of 64 hexadecimal characters, found {}",
                    json_kind(value)
                ),
            );
            return;
        };
        if sum.is_empty() {
            return;
        }
        if sum.len() != 64 {
            self.push(
                &path,
                format!(
                    "expected 64 hexadecimal characters (a SHA-256), found {} characters",
                    sum.chars().count()
                ),
            );
        } else if !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.push(
                &path,
                "expected 64 hexadecimal characters (a SHA-256), found other characters",
            );
        }
        if !map.contains_key(url_field) {
            self.push(
                path,
                format!(
                    "checks the file at {url_field}, which is not set; remove it or set {url_field}"
                ),
            );
        }
    }

    /// `scriptUri`, `sourceUri`: Image Builder downloads them, so an absolute http(s) URL. The
    /// value is never quoted back: it may carry a SAS.
    fn url(&mut self, path: &str, value: &Value) {
        const FORM: &str = "an absolute http(s) URL, such as https://<account>.blob.core.windows.net/<container>/<file>";
        let Value::String(s) = value else {
            self.push(
                path,
                format!("expected a string ({FORM}), found {}", json_kind(value)),
            );
            return;
        };
        let problem = if s.is_empty() {
            Some("is empty".to_owned())
        } else if s.trim() != s {
            Some("has spaces around it".to_owned())
        } else {
            match Url::parse(s) {
                Err(_) => Some("is not an absolute URL".to_owned()),
                // `C:\scripts\x.ps1` parses with the scheme `c`.
                Ok(u) if u.scheme().len() == 1 || u.scheme() == "file" => Some(
                    "is a local path; Image Builder downloads the file itself, so it must be reachable from Azure".to_owned(),
                ),
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    Some(format!("has the scheme '{}'", u.scheme()))
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    Some("has no host".to_owned())
                }
                Ok(_) => None,
            }
        };
        if let Some(problem) = problem {
            self.push(path, format!("{problem}; expected {FORM}"));
        }
    }

    fn string(&mut self, path: &str, value: &Value) {
        if !value.is_string() {
            self.push(
                path,
                format!("expected a string, found {}", json_kind(value)),
            );
        }
    }

    /// An array of strings; false (and problems pushed) when it is not one.
    fn strings(&mut self, path: &str, value: &Value, item: &str) -> bool {
        let Value::Array(items) = value else {
            let hint = if value.is_string() {
                " (put a single one in brackets)"
            } else {
                ""
            };
            self.push(
                path,
                format!(
                    "expected an array of strings, one {item} each, found {}{hint}",
                    json_kind(value)
                ),
            );
            return false;
        };
        let before = self.problems.len();
        for (i, entry) in items.iter().enumerate() {
            if !entry.is_string() {
                self.push(
                    format!("{path}[{i}]"),
                    format!("expected a string (one {item}), found {}", json_kind(entry)),
                );
            }
        }
        self.problems.len() == before
    }

    fn boolean(&mut self, path: &str, value: Option<&Value>) -> Option<bool> {
        match value? {
            Value::Bool(b) => Some(*b),
            other => {
                self.push(
                    path,
                    format!(
                        "expected true or false (a JSON boolean, unquoted), found {}",
                        json_kind(other)
                    ),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages.

fn unknown_field(kind: Kind, key: &str) -> String {
    let allowed = kind.fields();
    let list = allowed.join(", ");
    if let Some(right) = suggestion(key, allowed) {
        return format!(
            "unknown field for a {} customizer; did you mean '{right}'? (field names are case-sensitive; allowed: {list})",
            kind.name()
        );
    }
    let owners: Vec<&str> = KINDS
        .iter()
        .filter(|k| k.fields().contains(&key))
        .map(|k| k.name())
        .collect();
    if !owners.is_empty() {
        return format!(
            "is a field of {}, not of {}; allowed: {list}",
            owners.join(" and "),
            kind.name()
        );
    }
    format!(
        "unknown field for a {} customizer; allowed: {list}",
        kind.name()
    )
}

/// The JSON path of `key` in the object at `at`: `$[0].inline`, or `$[0]['odd key']`.
fn field_path(at: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && key.len() <= 64 {
        format!("{at}.{key}")
    } else {
        let short: String = key.chars().take(64).collect();
        let ellipsis = if short.len() < key.len() { "…" } else { "" };
        format!(
            "{at}['{}{ellipsis}']",
            short.replace('\\', "\\\\").replace('\'', "\\'")
        )
    }
}

/// A short value from the file, quoted for a message (truncated; control characters escaped).
fn quoted(value: &str) -> String {
    let short: String = value.chars().take(64).collect();
    let ellipsis = if short.len() < value.len() { "…" } else { "" };
    format!("{:?}{ellipsis}", short)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number as written (numbers carry no secrets), anything else by its kind.
fn number_or_kind(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        other => json_kind(other).to_owned(),
    }
}

/// The candidate `word` was probably meant as: equal but for case, or within two edits.
fn suggestion<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_ascii_lowercase();
    if let Some(same) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(same);
    }
    if word.chars().count() < 4 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Seconds in a Go duration without a sign (`300ms`, `1.5h`, `1h30m`); `None` if malformed.
/// Go also takes a bare `0`, which is no use as a timeout and left out.
fn duration_seconds(text: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("μs", 1e-6),
        ("ms", 1e-3),
        ("h", 3600.0),
        ("m", 60.0),
    ];
    let mut rest = text;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        // Two-letter units first, so `ms` is not read as `m` then `s`.
        let (unit, scale) = UNITS
            .iter()
            .chain(&[("s", 1.0)])
            .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += value * scale;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAS: &str =
        "https://acct.blob.core.windows.net/c/setup.sh?sv=2022-11-02&sr=b&sp=r&sig=c2VjcmV0";
    const SHA: &str = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";

    fn problems(text: &str, os: Os) -> Vec<(String, String)> {
        parse(text, os)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    fn paths(text: &str, os: Os) -> Vec<String> {
        problems(text, os).into_iter().map(|(p, _)| p).collect()
    }

    /// The one problem of `text`, which must be at `path`.
    fn only(text: &str, os: Os, path: &str) -> String {
        let found = problems(text, os);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].0, path, "{found:#?}");
        found[0].1.clone()
    }

    #[test]
    fn a_linux_file_becomes_typed_customizers_in_order() {
        let text = format!(
            r#"[
                {{"type": "Shell", "name": "tools", "inline": ["sudo apt-get update", "sudo apt-get install -y jq"]}},
                {{"type": "Shell", "scriptUri": "{SAS}", "sha256Checksum": "{SHA}"}},
                {{"type": "File", "sourceUri": "https://example.com/app.conf", "destination": "/tmp/app.conf", "sha256Checksum": ""}}
            ]"#
        );
        let got = parse(&text, Os::Linux).unwrap();
        assert_eq!(
            got,
            [
                Customizer::Shell {
                    name: "tools".into(),
                    inline: vec![
                        "sudo apt-get update".into(),
                        "sudo apt-get install -y jq".into()
                    ],
                    script_uri: None,
                    sha256_checksum: None,
                },
                Customizer::Shell {
                    name: String::new(),
                    inline: vec![],
                    script_uri: Some(SAS.into()),
                    sha256_checksum: Some(SHA.into()),
                },
                Customizer::File {
                    name: String::new(),
                    source_uri: "https://example.com/app.conf".into(),
                    destination: "/tmp/app.conf".into(),
                    sha256_checksum: None,
                },
            ]
        );
    }

    #[test]
    fn a_windows_file_with_every_windows_type() {
        let text = r#"[
            {"type": "PowerShell", "name": "setup", "inline": ["Write-Host hi"], "runElevated": true, "runAsSystem": true, "validExitCodes": [0, 3010, -1]},
            {"type": "File", "sourceUri": "http://example.com/a.txt", "destination": "C:\\buildArtifacts\\a.txt"},
            {"type": "WindowsRestart", "restartCommand": "shutdown /r /f /t 0", "restartCheckCommand": "echo ok", "restartTimeout": "1h30m"},
            {"type": "WindowsUpdate", "searchCriteria": "IsInstalled=0", "filters": ["exclude:$_.Title -like '*Preview*'", "include:$true"], "updateLimit": 20}
        ]"#;
        let got = parse(text, Os::Windows).unwrap();
        assert_eq!(
            got[0],
            Customizer::PowerShell {
                name: "setup".into(),
                inline: vec!["Write-Host hi".into()],
                script_uri: None,
                sha256_checksum: None,
                run_elevated: true,
                run_as_system: true,
                valid_exit_codes: Some(vec![0, 3010, -1]),
            }
        );
        assert!(
            matches!(&got[1], Customizer::File { destination, .. } if destination == r"C:\buildArtifacts\a.txt")
        );
        assert_eq!(
            got[2],
            Customizer::WindowsRestart {
                name: String::new(),
                restart_command: Some("shutdown /r /f /t 0".into()),
                restart_check_command: Some("echo ok".into()),
                restart_timeout: Some("1h30m".into()),
            }
        );
        assert!(
            matches!(&got[3], Customizer::WindowsUpdate { update_limit: Some(20), filters, .. } if filters.len() == 2)
        );
    }

    #[test]
    fn an_empty_array_adds_nothing_and_a_bom_is_accepted() {
        assert_eq!(parse("[]", Os::Linux).unwrap(), []);
        assert_eq!(parse("\u{feff} [ ]\n", Os::Windows).unwrap(), []);
    }

    #[test]
    fn the_document_must_be_a_json_array() {
        let m = only(r#"{"type": "Shell", "inline": ["x"]}"#, Os::Linux, "$");
        assert!(
            m.contains("found an object") && m.contains("in brackets"),
            "{m}"
        );
        let m = only(r#"{"properties": {"customize": []}}"#, Os::Linux, "$");
        assert!(m.contains("not the template"), "{m}");
        let m = only("42", Os::Linux, "$");
        assert_eq!(m, "expected a JSON array of customizers, found a number");
        let m = only("  \n", Os::Linux, "");
        assert!(m.starts_with("is empty"), "{m}");
    }

    #[test]
    fn invalid_json_gives_line_and_column() {
        let m = only("[\n  {\"type\": \"Shell\",}\n]", Os::Linux, "");
        assert!(m.starts_with("is not valid JSON: "), "{m}");
        assert!(m.ends_with("at line 2, column 20"), "{m}");
        assert!(
            !m.contains("line 2 column"),
            "serde's own suffix is replaced: {m}"
        );
    }

    #[test]
    fn items_must_be_objects_with_a_known_type() {
        let text = r#"["Shell", {"inline": ["x"]}, {"type": 3}, {"type": "shell", "inline": ["x"]}, {"type": "PowerShel", "inline": ["x"]}, {"type": "Ansible"}]"#;
        let found = problems(text, Os::Linux);
        let p: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            p,
            [
                "$[0]",
                "$[1].type",
                "$[2].type",
                "$[3].type",
                "$[4].type",
                "$[5].type"
            ]
        );
        assert!(found[0].1.contains("found a string"), "{found:#?}");
        assert!(found[1].1.starts_with(
            "is required; expected one of Shell, PowerShell, File, WindowsRestart, WindowsUpdate"
        ));
        assert!(found[2].1.contains("found a number"));
        assert_eq!(
            found[3].1,
            "unknown customizer type \"shell\"; did you mean \"Shell\"? (types are case-sensitive)"
        );
        assert!(
            found[4].1.contains("did you mean \"PowerShell\"?"),
            "{}",
            found[4].1
        );
        assert!(!found[5].1.contains("did you mean"), "{}", found[5].1);
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let m = only(
            r#"[{"type": "Shell", "scriptURI": "https://x/s.sh", "scriptUri": "https://x/s.sh"}]"#,
            Os::Linux,
            "$[0].scriptURI",
        );
        assert!(m.contains("did you mean 'scriptUri'?"), "{m}");
        assert!(
            m.contains("allowed: type, name, inline, scriptUri, sha256Checksum"),
            "{m}"
        );
        let m = only(
            r#"[{"type": "Shell", "inline": ["x"], "runElevated": true}]"#,
            Os::Linux,
            "$[0].runElevated",
        );
        assert!(
            m.starts_with("is a field of PowerShell, not of Shell"),
            "{m}"
        );
        let m = only(
            r#"[{"type": "File", "sourceUri": "https://x/f", "destination": "/tmp/f", "odd key": 1}]"#,
            Os::Linux,
            "$[0]['odd key']",
        );
        assert!(
            m.starts_with("unknown field for a File customizer; allowed: "),
            "{m}"
        );
    }

    #[test]
    fn inline_and_script_uri_exactly_one_and_well_formed() {
        assert_eq!(
            paths(
                r#"[{"type": "Shell", "inline": ["ok", 7, null]}, {"type": "Shell", "inline": []}, {"type": "Shell", "inline": "echo"}]"#,
                Os::Linux
            ),
            [
                "$[0].inline[1]",
                "$[0].inline[2]",
                "$[1].inline",
                "$[2].inline"
            ]
        );
        let m = only(
            &format!(r#"[{{"type": "PowerShell", "inline": ["x"], "scriptUri": "{SAS}"}}]"#),
            Os::Windows,
            "$[0]",
        );
        assert!(m.contains("both inline and scriptUri"), "{m}");
        let m = only(r#"[{"type": "Shell", "name": "n"}]"#, Os::Linux, "$[0]");
        assert!(m.contains("neither inline nor scriptUri"), "{m}");
        let found = problems(r#"[{"type": "Shell", "inline": ["a", 1]}]"#, Os::Linux);
        assert_eq!(
            found[0].1,
            "expected a string (one command line), found a number"
        );
    }

    #[test]
    fn urls_must_be_absolute_http_and_are_never_echoed() {
        let cases = [
            ("setup.sh", "is not an absolute URL"),
            (r"C:\\scripts\\setup.ps1", "is a local path"),
            ("file:///tmp/setup.sh?sig=c2VjcmV0", "is a local path"),
            ("ftp://h/setup.sh?sig=c2VjcmV0", "has the scheme 'ftp'"),
            (" https://h/setup.sh?sig=c2VjcmV0", "has spaces around it"),
            ("", "is empty"),
        ];
        for (uri, expected) in cases {
            let text = format!(r#"[{{"type": "Shell", "scriptUri": "{uri}"}}]"#);
            let m = only(&text, Os::Linux, "$[0].scriptUri");
            assert!(m.starts_with(expected), "{uri}: {m}");
            assert!(m.contains("expected an absolute http(s) URL"), "{m}");
            assert!(!m.contains("c2VjcmV0") && !m.contains("setup"), "{m}");
        }
        let m = only(
            r#"[{"type": "File", "sourceUri": 5, "destination": "/tmp/x"}]"#,
            Os::Linux,
            "$[0].sourceUri",
        );
        assert!(m.contains("found a number"), "{m}");
        // A good SAS URL passes, and a whole error never shows its signature.
        let text = format!(
            r#"[{{"type": "File", "sourceUri": "{SAS}", "destination": "tmp/x"}}, {{"type": "Shell", "scriptUri": "{SAS}"}}]"#
        );
        let e = parse(&text, Os::Windows).unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn checksums_are_64_hex_digits_for_a_url() {
        let bad_length = format!(
            r#"[{{"type": "Shell", "scriptUri": "https://h/s", "sha256Checksum": "{}"}}]"#,
            &SHA[..63]
        );
        let m = only(&bad_length, Os::Linux, "$[0].sha256Checksum");
        assert!(m.ends_with("found 63 characters"), "{m}");
        let not_hex = format!(
            r#"[{{"type": "Shell", "scriptUri": "https://h/s", "sha256Checksum": "{}g"}}]"#,
            &SHA[..63]
        );
        let m = only(&not_hex, Os::Linux, "$[0].sha256Checksum");
        assert!(m.ends_with("found other characters"), "{m}");
        let without_url =
            format!(r#"[{{"type": "Shell", "inline": ["x"], "sha256Checksum": "{SHA}"}}]"#);
        let m = only(&without_url, Os::Linux, "$[0].sha256Checksum");
        assert!(m.contains("scriptUri, which is not set"), "{m}");
        let m = only(
            r#"[{"type": "File", "sourceUri": "https://h/f", "destination": "/f", "sha256Checksum": 1}]"#,
            Os::Linux,
            "$[0].sha256Checksum",
        );
        assert!(m.contains("found a number"), "{m}");
    }

    #[test]
    fn run_as_system_needs_run_elevated_and_booleans_are_booleans() {
        let m = only(
            r#"[{"type": "PowerShell", "inline": ["x"], "runAsSystem": true}]"#,
            Os::Windows,
            "$[0].runAsSystem",
        );
        assert_eq!(
            m,
            "is true but runElevated is not; expected runElevated: true as well"
        );
        only(
            r#"[{"type": "PowerShell", "inline": ["x"], "runElevated": false, "runAsSystem": true}]"#,
            Os::Windows,
            "$[0].runAsSystem",
        );
        let m = only(
            r#"[{"type": "PowerShell", "inline": ["x"], "runElevated": "true"}]"#,
            Os::Windows,
            "$[0].runElevated",
        );
        assert!(m.contains("JSON boolean, unquoted"), "{m}");
        assert!(
            parse(
                r#"[{"type": "PowerShell", "inline": ["x"], "runElevated": true, "runAsSystem": false}]"#,
                Os::Windows
            )
            .is_ok()
        );
    }

    #[test]
    fn valid_exit_codes_are_32_bit_integers() {
        let found = problems(
            r#"[{"type": "PowerShell", "inline": ["x"], "validExitCodes": [0, 4294967295, "1", 1.5, 99999999999]}]"#,
            Os::Windows,
        );
        let p: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            p,
            [
                "$[0].validExitCodes[1]",
                "$[0].validExitCodes[2]",
                "$[0].validExitCodes[3]",
                "$[0].validExitCodes[4]"
            ]
        );
        assert!(found[0].1.contains("write -1"), "{}", found[0].1);
        assert!(found[1].1.ends_with("found a string"));
        assert!(found[2].1.ends_with("found 1.5"));
        only(
            r#"[{"type": "PowerShell", "inline": ["x"], "validExitCodes": 0}]"#,
            Os::Windows,
            "$[0].validExitCodes",
        );
    }

    #[test]
    fn restart_timeouts_are_go_durations() {
        for good in ["5m", "2h", "30s", "1h30m", "1.5h", "300ms", "90s"] {
            assert!(duration_seconds(good).is_some_and(|d| d > 0.0), "{good}");
            let text = format!(r#"[{{"type": "WindowsRestart", "restartTimeout": "{good}"}}]"#);
            assert!(parse(&text, Os::Windows).is_ok(), "{good}");
        }
        assert_eq!(duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(duration_seconds("250ms"), Some(0.25));
        for bad in ["5", "5 m", "m", "-5m", "5min", "1..5h", "", "5m "] {
            assert_eq!(duration_seconds(bad), None, "{bad}");
        }
        let m = only(
            r#"[{"type": "WindowsRestart", "restartTimeout": "10 minutes"}]"#,
            Os::Windows,
            "$[0].restartTimeout",
        );
        assert!(
            m.starts_with("expected a duration such as 5m") && m.ends_with("found \"10 minutes\""),
            "{m}"
        );
        let m = only(
            r#"[{"type": "WindowsRestart", "restartTimeout": "0s"}]"#,
            Os::Windows,
            "$[0].restartTimeout",
        );
        assert!(m.starts_with("is zero"), "{m}");
        assert_eq!(
            paths(
                r#"[{"type": "WindowsRestart", "restartTimeout": 5, "restartCommand": ["x"]}]"#,
                Os::Windows
            ),
            ["$[0].restartCommand", "$[0].restartTimeout"]
        );
    }

    #[test]
    fn windows_update_limits_and_filters() {
        let found = problems(
            r#"[{"type": "WindowsUpdate", "updateLimit": -1, "filters": ["inlcude:$true", "$true", "Exclude:$_.IsBeta"], "searchCriteria": 0},
                {"type": "WindowsUpdate", "updateLimit": 2147483648},
                {"type": "WindowsUpdate", "updateLimit": 2.5, "filters": [1]}]"#,
            Os::Windows,
        );
        let p: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            p,
            [
                "$[0].searchCriteria",
                "$[0].filters[0]",
                "$[0].filters[1]",
                "$[0].updateLimit",
                "$[1].updateLimit",
                "$[2].filters[0]",
                "$[2].updateLimit"
            ]
        );
        assert!(
            found[1]
                .1
                .starts_with("expected include:<expression> or exclude:<expression>")
        );
        assert!(found[3].1.ends_with("found -1"), "{}", found[3].1);
        assert!(found[6].1.ends_with("found 2.5"), "{}", found[6].1);
        assert!(
            parse(
                r#"[{"type": "WindowsUpdate", "updateLimit": 0}]"#,
                Os::Windows
            )
            .is_ok()
        );
    }

    #[test]
    fn each_type_runs_on_its_system() {
        let m = only(
            r#"[{"type": "Shell", "inline": ["x"]}]"#,
            Os::Windows,
            "$[0].type",
        );
        assert_eq!(
            m,
            "Shell customizers run on Linux only, but input 'provisioner' is 'powershell' (Windows); use PowerShell"
        );
        let m = only(
            r#"[{"type": "PowerShell", "inline": ["x"]}]"#,
            Os::Linux,
            "$[0].type",
        );
        assert!(
            m.contains("Windows only") && m.contains("'shell' (Linux); use Shell"),
            "{m}"
        );
        assert_eq!(
            paths(
                r#"[{"type": "WindowsRestart"}, {"type": "WindowsUpdate"}]"#,
                Os::Linux
            ),
            ["$[0].type", "$[1].type"]
        );
        for (os, dest) in [(Os::Linux, "/tmp/f"), (Os::Windows, "C:/temp/f")] {
            let text = format!(
                r#"[{{"type": "File", "sourceUri": "https://h/f", "destination": "{dest}"}}]"#
            );
            assert!(parse(&text, os).is_ok(), "{os:?}");
        }
    }

    #[test]
    fn file_needs_a_source_and_an_absolute_destination() {
        let found = problems(r#"[{"type": "File"}]"#, Os::Linux);
        assert_eq!(
            found.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["$[0].sourceUri", "$[0].destination"]
        );
        assert!(found[1].1.contains("/tmp/app.conf"));
        for (os, dest) in [
            (Os::Linux, "tmp/f"),
            (Os::Linux, r"C:\\f"),
            (Os::Windows, "/tmp/f"),
            (Os::Windows, r"buildArtifacts\\f"),
        ] {
            let text = format!(
                r#"[{{"type": "File", "sourceUri": "https://h/f", "destination": "{dest}"}}]"#
            );
            let m = only(&text, os, "$[0].destination");
            assert!(m.starts_with("expected an absolute path"), "{m}");
        }
    }

    #[test]
    fn names_are_optional_unique_and_not_the_tasks() {
        let text = r#"[
            {"type": "Shell", "name": "a", "inline": ["x"]},
            {"type": "Shell", "name": "", "inline": ["x"]},
            {"type": "Shell", "name": "", "inline": ["x"]},
            {"type": "Shell", "name": "a", "inline": ["x"]},
            {"type": "Shell", "name": "AIB-Task-inline-script", "inline": ["x"]},
            {"type": "Shell", "name": 1, "inline": ["x"]}
        ]"#;
        let found = problems(text, Os::Linux);
        assert_eq!(
            found.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["$[3].name", "$[4].name", "$[5].name"]
        );
        assert_eq!(
            found[0].1,
            "\"a\" is also the name of $[0]; expected names unique within the file"
        );
        assert!(found[1].1.contains("reserved for the task's own steps"));
        // Every step name the task uses is refused.
        let text = format!(
            r#"[{{"type": "Shell", "name": "{}", "inline": ["x"]}}]"#,
            image_template::step::INLINE_SCRIPT
        );
        only(&text, Os::Linux, "$[0].name");
    }

    #[test]
    fn null_is_a_wrong_type_not_an_absent_field() {
        assert_eq!(
            paths(
                r#"[{"type": "PowerShell", "name": null, "inline": null, "runElevated": null}]"#,
                Os::Windows
            ),
            ["$[0].name", "$[0].inline", "$[0].runElevated"]
        );
    }

    #[test]
    fn every_problem_at_once_and_one_input_error_each() {
        let text = r#"[
            {"type": "Shell", "inline": [1]},
            {"type": "shell"},
            {"type": "File", "sourceUri": "x", "destination": "/d"}
        ]"#;
        let e = parse(text, Os::Linux).unwrap_err();
        assert_eq!(e.problems.len(), 3, "{e:#?}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("3 problems: $[0].inline[0]: expected a string"),
            "{shown}"
        );
        assert!(
            shown.contains("; $[1].type: unknown customizer type \"shell\""),
            "{shown}"
        );
        assert!(
            shown.contains("; $[2].sourceUri: is not an absolute URL"),
            "{shown}"
        );
        let errors = e.input_errors();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0].input, INPUT);
        assert_eq!(
            errors[0].to_string(),
            "input 'customizersFile': $[0].inline[0]: expected a string (one command line), found a number"
        );
        let one = InputError::from(e);
        assert!(
            one.to_string()
                .starts_with("input 'customizersFile': 3 problems: ")
        );
        // Many problems: the messages list the first ones and count the rest.
        let many = format!("[{}]", vec!["1"; 30].join(","));
        let e = parse(&many, Os::Linux).unwrap_err();
        assert_eq!(e.problems.len(), 30);
        assert!(
            e.to_string()
                .ends_with("; and 10 more problems in the file")
        );
        assert_eq!(e.input_errors().len(), MAX_LISTED_PROBLEMS + 1);
    }

    #[test]
    fn the_size_is_limited() {
        let big = format!("[{}]", " ".repeat(MAX_FILE_BYTES as usize));
        let m = only(&big, Os::Linux, "");
        assert!(m.starts_with("is larger than 1048576 bytes"), "{m}");
    }

    #[test]
    fn load_reads_utf8_files_and_explains_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("customizers.json");
        std::fs::write(
            &good,
            "\u{feff}[{\"type\": \"Shell\", \"inline\": [\"x\"]}]",
        )
        .unwrap();
        assert_eq!(load(&good, Os::Linux).unwrap().len(), 1);

        let message = |path: &Path| {
            let e = load(path, Os::Linux).unwrap_err();
            assert_eq!(e.problems.len(), 1);
            assert_eq!(e.problems[0].path, "");
            e.problems[0].message.clone()
        };
        let missing = dir.path().join("absent.json");
        assert_eq!(
            message(&missing),
            format!("cannot read '{}': no such file", missing.display())
        );
        assert!(message(dir.path()).ends_with("is a folder; expected a JSON file"));
        let utf16 = dir.path().join("utf16.json");
        std::fs::write(&utf16, b"\xFF\xFE[\0]\0").unwrap();
        assert!(message(&utf16).contains("is UTF-16 text"));
        let latin1 = dir.path().join("latin1.json");
        std::fs::write(&latin1, b"[\"caf\xE9\"]").unwrap();
        assert!(
            message(&latin1)
                .ends_with("is not UTF-8 text (invalid byte at offset 5); save it as UTF-8")
        );
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(message(&big).contains("is larger than"));
        let not_json = dir.path().join("bad.json");
        std::fs::write(&not_json, "[1,]").unwrap();
        assert!(message(&not_json).contains("at line 1, column 4"));
    }

    #[test]
    fn suggestions_and_paths() {
        assert_eq!(
            suggestion("sourceURL", &["sourceUri", "destination"]),
            Some("sourceUri")
        );
        assert_eq!(
            suggestion("destinaton", &["sourceUri", "destination"]),
            Some("destination")
        );
        assert_eq!(
            suggestion("uri", &["url"]),
            None,
            "short words are not guessed"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(field_path("$[0]", "inline"), "$[0].inline");
        assert_eq!(field_path("$[0]", "it's"), r"$[0]['it\'s']");
        assert_eq!(quoted(&"x".repeat(100)), format!("\"{}\"…", "x".repeat(64)));
    }
}
