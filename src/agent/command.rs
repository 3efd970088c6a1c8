//! Logging commands: the `##vso[area.action key=value;…]message` lines the Azure Pipelines agent
//! parses from a task's output, and the cosmetic `##[group]`-style lines.
//!
//! Pure formatting with the agent's exact escaping; nothing here writes anywhere (see
//! [`super::console`]). [`decode`] mirrors the agent's parser so tests can prove a round trip.

use std::fmt::Write as _;

/// The agent's escapes, in the order it applies them when decoding. `%` must be escaped first and
/// decoded last, which is why it uses the unusual `%AZP25` form: `%3B` in a value survives as
/// `%AZP253B`, which contains no other escape.
const ESCAPES: [(&str, &str); 4] = [(";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D")];

/// Escapes a property value or a message so the agent reads back exactly `value`.
pub fn escape(value: &str) -> String {
    let mut out = value.replace('%', "%AZP25");
    for (raw, escaped) in ESCAPES {
        out = out.replace(raw, escaped);
    }
    out
}

/// Reverses [`escape`] the way the agent does.
pub fn unescape(value: &str) -> String {
    let mut out = value.to_owned();
    for (raw, escaped) in ESCAPES {
        out = out.replace(escaped, raw);
    }
    out.replace("%AZP25", "%")
}

/// Outcome of a task, as `task.complete` spells it (the values are case-sensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskResult {
    Succeeded,
    SucceededWithIssues,
    Failed,
}

impl TaskResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskResult::Succeeded => "Succeeded",
            TaskResult::SucceededWithIssues => "SucceededWithIssues",
            TaskResult::Failed => "Failed",
        }
    }
}

/// Severity of a `task.logissue` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueType {
    Error,
    Warning,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Error => "error",
            IssueType::Warning => "warning",
        }
    }
}

/// One `##vso[…]` command: area, action, ordered properties and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggingCommand {
    pub area: String,
    pub action: String,
    pub properties: Vec<(String, String)>,
    pub message: String,
}

impl LoggingCommand {
    pub fn new(area: &str, action: &str) -> Self {
        LoggingCommand {
            area: area.to_owned(),
            action: action.to_owned(),
            properties: Vec::new(),
            message: String::new(),
        }
    }

    pub fn property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.properties.push((key.to_owned(), value.into()));
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// `task.setvariable`; `is_output` makes it addressable by later jobs and stages.
    pub fn set_variable(name: &str, value: &str, is_secret: bool, is_output: bool) -> Self {
        LoggingCommand::new("task", "setvariable")
            .property("variable", name)
            .property("isSecret", is_secret.to_string())
            .property("isOutput", is_output.to_string())
            .message(value)
    }

    /// `task.setsecret`: the agent masks `value` in every later line of the job log.
    pub fn set_secret(value: &str) -> Self {
        LoggingCommand::new("task", "setsecret").message(value)
    }

    pub fn log_issue(kind: IssueType, message: &str) -> Self {
        LoggingCommand::new("task", "logissue")
            .property("type", kind.as_str())
            .message(message)
    }

    pub fn complete(result: TaskResult, message: &str) -> Self {
        LoggingCommand::new("task", "complete")
            .property("result", result.as_str())
            .message(message)
    }

    /// `task.setprogress`, `percent` clamped to 0–100.
    pub fn set_progress(percent: u8, operation: &str) -> Self {
        LoggingCommand::new("task", "setprogress")
            .property("value", percent.min(100).to_string())
            .message(operation)
    }

    /// `task.uploadsummary`: a Markdown file shown on the run's summary page.
    pub fn upload_summary(path: &str) -> Self {
        LoggingCommand::new("task", "uploadsummary").message(path)
    }

    /// `task.uploadfile`: a file attached to the step's log, downloaded with the job's logs.
    pub fn upload_file(path: &str) -> Self {
        LoggingCommand::new("task", "uploadfile").message(path)
    }

    /// The single line to print (without the line break).
    pub fn render(&self) -> String {
        let mut line = format!("##vso[{}.{}", self.area, self.action);
        for (i, (key, value)) in self.properties.iter().enumerate() {
            line.push(if i == 0 { ' ' } else { ';' });
            let _ = write!(line, "{}={}", key, escape(value));
        }
        line.push(']');
        line.push_str(&escape(&self.message));
        line
    }
}

/// Cosmetic formatting lines; the agent folds groups and colours the rest. `##[error]` does not
/// fail the step (only `task.complete` and the exit code do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Group,
    EndGroup,
    Section,
    Warning,
    Error,
    Debug,
    Command,
}

impl Format {
    pub fn prefix(self) -> &'static str {
        match self {
            Format::Group => "##[group]",
            Format::EndGroup => "##[endgroup]",
            Format::Section => "##[section]",
            Format::Warning => "##[warning]",
            Format::Error => "##[error]",
            Format::Debug => "##[debug]",
            Format::Command => "##[command]",
        }
    }
}

/// A command as the agent parses it from one line of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCommand {
    pub area: String,
    pub action: String,
    /// Keys lower-cased, as the agent compares them case-insensitively.
    pub properties: Vec<(String, String)>,
    pub message: String,
}

impl ParsedCommand {
    pub fn property(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `##vso[` command out of a line the way the agent does: found anywhere in the line,
/// command info up to the first `]`, properties split on `;` and each at its first `=`.
pub fn decode(line: &str) -> Option<ParsedCommand> {
    let start = line.find("##vso[")? + "##vso[".len();
    let rest = &line[start..];
    let end = rest.find(']')?;
    let (info, message) = (&rest[..end], &rest[end + 1..]);
    let (name, props) = match info.find(' ') {
        Some(i) => (&info[..i], &info[i + 1..]),
        None => (info, ""),
    };
    let (area, action) = name.split_once('.')?;
    let properties = props
        .split(';')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), unescape(v)))
        })
        .collect();
    Some(ParsedCommand {
        area: area.to_owned(),
        action: action.to_owned(),
        properties,
        message: unescape(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &[&str] = &[
        "",
        "plain",
        "100%",
        "%AZP25",
        "%3B%0D%0A%5D",
        "a;b;c",
        "x]y]]",
        "line1\nline2\r\nline3\r",
        "key=value;other=thing]tail",
        "%%;;]]\r\n\n\r%AZP25%3B",
        "ünïcödé ✓ 名前",
        "https://acct.blob.core.windows.net/c/b.zip?sv=2022&sig=a%2Fb%3D",
    ];

    #[test]
    fn escape_covers_every_special_character() {
        assert_eq!(escape("%"), "%AZP25");
        assert_eq!(escape("\r"), "%0D");
        assert_eq!(escape("\n"), "%0A");
        assert_eq!(escape("]"), "%5D");
        assert_eq!(escape(";"), "%3B");
        assert_eq!(escape("%3B"), "%AZP253B");
        for value in NASTY {
            let escaped = escape(value);
            assert!(!escaped.contains(['\r', '\n', ']', ';']), "{escaped:?}");
        }
    }

    #[test]
    fn escaped_values_decode_to_the_original() {
        for value in NASTY {
            assert_eq!(unescape(&escape(value)), *value, "round trip of {value:?}");
        }
    }

    #[test]
    fn rendered_commands_parse_back_exactly() {
        for value in NASTY {
            let cmd = LoggingCommand::set_variable("imageUri", value, false, true);
            let line = cmd.render();
            assert!(!line.contains('\n') && !line.contains('\r'));
            let parsed = decode(&line).expect("parses");
            assert_eq!(parsed.area, "task");
            assert_eq!(parsed.action, "setvariable");
            assert_eq!(parsed.property("variable"), Some("imageUri"));
            assert_eq!(parsed.property("isOutput"), Some("true"));
            assert_eq!(parsed.message, *value);

            let prop = LoggingCommand::new("task", "logissue")
                .property("type", "warning")
                .property("sourcepath", *value)
                .message(*value);
            let parsed = decode(&prop.render()).unwrap();
            assert_eq!(parsed.property("sourcepath"), Some(*value));
            assert_eq!(parsed.message, *value);
        }
    }

    #[test]
    fn renders_the_agent_shapes() {
        assert_eq!(
            LoggingCommand::set_variable("pirSku", "22_04-lts", false, true).render(),
            "##vso[task.setvariable variable=pirSku;isSecret=false;isOutput=true]22_04-lts"
        );
        assert_eq!(
            LoggingCommand::complete(TaskResult::Failed, "boom; really]").render(),
            "##vso[task.complete result=Failed]boom%3B really%5D"
        );
        assert_eq!(
            LoggingCommand::set_progress(140, "Customizing").render(),
            "##vso[task.setprogress value=100]Customizing"
        );
        assert_eq!(
            LoggingCommand::log_issue(IssueType::Warning, "w").render(),
            "##vso[task.logissue type=warning]w"
        );
        assert_eq!(
            LoggingCommand::set_secret("s3cr%t").render(),
            "##vso[task.setsecret]s3cr%AZP25t"
        );
        assert_eq!(
            LoggingCommand::upload_summary("/tmp/s.md").render(),
            "##vso[task.uploadsummary]/tmp/s.md"
        );
    }

    #[test]
    fn decode_finds_commands_anywhere_and_ignores_case_of_keys() {
        let parsed = decode("prefix ##vso[task.setvariable VARIABLE=a;IsOutput=true]v").unwrap();
        assert_eq!(parsed.property("variable"), Some("a"));
        assert_eq!(parsed.property("isoutput"), Some("true"));
        assert!(decode("no command here").is_none());
    }
}
