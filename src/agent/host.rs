//! Who runs the task, and so how each kind of line is spoken: the Azure Pipelines agent
//! (`##vso[…]` logging commands, `TF_BUILD`), a GitHub Actions runner (`::workflow-command::`
//! lines and the `GITHUB_OUTPUT` / `GITHUB_STEP_SUMMARY` files, `GITHUB_ACTIONS=true`), or a
//! person at a terminal (plain text, `error:`/`warning:` prefixes, coloured on a TTY).
//!
//! [`Host::detect`] chooses once from the environment; [`super::Console`] hands every line it
//! prints to [`Host::render`], which is pure: it turns a [`Line`] into [`Effect`]s (a line on
//! standard output, text to append to a file) and the console carries them out. The rest of the
//! task never asks which host it runs under. Azure Pipelines output is exactly what the task
//! printed before hosts existed.
//!
//! Sources: REFERENCE §2 (the agent's commands), §8 and GitHub's "Workflow commands for GitHub
//! Actions" (`::add-mask::`, `::group::`, `::error::`, the multi-line `name<<DELIMITER` form of
//! `GITHUB_OUTPUT`, `GITHUB_STEP_SUMMARY`).

use std::path::{Path, PathBuf};

use super::Environment;
use super::command::{Format, IssueType, LoggingCommand, TaskResult};

/// Where the task runs, chosen once per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// `TF_BUILD` is set: logging commands for the agent.
    AzurePipelines,
    /// `GITHUB_ACTIONS=true` (and no `TF_BUILD`): workflow commands and the runner's files.
    GitHubActions(GitHubFiles),
    /// Neither: plain human output.
    Terminal {
        /// ANSI colours: standard output is a TTY and `NO_COLOR` is unset.
        color: bool,
    },
}

/// The files a GitHub Actions runner names for a step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitHubFiles {
    /// `GITHUB_OUTPUT`: the step's outputs.
    pub output: Option<PathBuf>,
    /// `GITHUB_STEP_SUMMARY`: Markdown shown on the run's summary page.
    pub summary: Option<PathBuf>,
}

/// Which file an [`Effect::Append`] writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFile {
    /// `GITHUB_OUTPUT`.
    Output,
    /// `GITHUB_STEP_SUMMARY`.
    Summary,
}

/// One thing the task says, before the host decides how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Plain text, possibly several lines.
    Info(&'a str),
    /// Detail shown only in debug runs (the console decides whether to render it at all).
    Debug(&'a str),
    Warning(&'a str),
    Error(&'a str),
    Section(&'a str),
    GroupStart(&'a str),
    GroupEnd,
    /// One form of a secret, announced so the host masks it (never printed by a terminal).
    Secret(&'a str),
    /// An output of the step (an output variable in Azure Pipelines).
    Output {
        name: &'a str,
        value: &'a str,
        is_output: bool,
    },
    Progress {
        percent: u8,
        operation: &'a str,
    },
    /// A Markdown file for the run's summary page.
    Summary(&'a Path),
    /// A file attached to the step's log.
    Attach(&'a Path),
    /// The task's result with its message.
    Complete {
        result: TaskResult,
        message: &'a str,
    },
}

/// What the console does for a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// One line on standard output (without its line break).
    Print(String),
    /// Text appended to a runner file (with its own line breaks).
    Append(HostFile, String),
    /// The contents of a file appended to a runner file.
    AppendFileContents { from: PathBuf, to: HostFile },
}

impl Host {
    /// `TF_BUILD` wins (an agent may itself run inside something else), then
    /// `GITHUB_ACTIONS=true`, else a terminal, coloured when `stdout_is_tty` and `NO_COLOR` is
    /// unset (<https://no-color.org>: any non-empty value disables colour).
    pub fn detect(env: &Environment, stdout_is_tty: bool) -> Host {
        if env.flag("TF_BUILD") {
            Host::AzurePipelines
        } else if env.flag("GITHUB_ACTIONS") {
            Host::GitHubActions(GitHubFiles {
                output: env.get("GITHUB_OUTPUT").map(PathBuf::from),
                summary: env.get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            })
        } else {
            Host::Terminal {
                color: stdout_is_tty && env.get("NO_COLOR").is_none(),
            }
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Host::Terminal { .. })
    }

    /// A name for messages: "Azure Pipelines", "GitHub Actions", "a terminal".
    pub fn describe(&self) -> &'static str {
        match self {
            Host::AzurePipelines => "Azure Pipelines",
            Host::GitHubActions(_) => "GitHub Actions",
            Host::Terminal { .. } => "a terminal",
        }
    }

    /// How `line` is spoken here. `delimiter` ends a multi-line output in `GITHUB_OUTPUT` and
    /// must not occur in the value (the console picks a random one that does not).
    pub fn render(&self, line: &Line<'_>, delimiter: &str) -> Vec<Effect> {
        match self {
            Host::AzurePipelines => azure_pipelines(line),
            Host::GitHubActions(files) => github_actions(files, line, delimiter),
            Host::Terminal { color } => terminal(*color, line),
        }
    }
}

/// Each line of `text` behind `prefix`, a trailing `\r` dropped: a debug message's later lines
/// keep their prefix, or they would show unconditionally.
fn prefixed(prefix: &str, text: &str) -> Vec<Effect> {
    text.split('\n')
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            Effect::Print(format!("{prefix}{line}"))
        })
        .collect()
}

fn print(line: String) -> Vec<Effect> {
    vec![Effect::Print(line)]
}

fn azure_pipelines(line: &Line<'_>) -> Vec<Effect> {
    let command = |c: LoggingCommand| print(c.render());
    match *line {
        Line::Info(text) => prefixed("", text),
        Line::Debug(text) => prefixed(Format::Debug.prefix(), text),
        Line::Warning(text) => command(LoggingCommand::log_issue(IssueType::Warning, text)),
        Line::Error(text) => command(LoggingCommand::log_issue(IssueType::Error, text)),
        Line::Section(text) => prefixed(Format::Section.prefix(), text),
        Line::GroupStart(text) => prefixed(Format::Group.prefix(), text),
        Line::GroupEnd => prefixed(Format::EndGroup.prefix(), ""),
        Line::Secret(value) => command(LoggingCommand::set_secret(value)),
        Line::Output {
            name,
            value,
            is_output,
        } => command(LoggingCommand::set_variable(name, value, false, is_output)),
        Line::Progress { percent, operation } => {
            command(LoggingCommand::set_progress(percent, operation))
        }
        Line::Summary(path) => command(LoggingCommand::upload_summary(&path.display().to_string())),
        Line::Attach(path) => command(LoggingCommand::upload_file(&path.display().to_string())),
        Line::Complete { result, message } => command(LoggingCommand::complete(result, message)),
    }
}

/// Escapes a workflow command's data as the runner decodes it: `%`, CR, LF.
pub fn github_escape_data(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Reverses [`github_escape_data`] as the runner does.
pub fn github_unescape_data(value: &str) -> String {
    value
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// `name=value`, or `name<<DELIMITER`, the value, `DELIMITER` when the value has a line break
/// (GitHub's documented multi-line form); each entry ends in a line break.
pub fn github_output_entry(name: &str, value: &str, delimiter: &str) -> String {
    if value.contains(['\n', '\r']) {
        format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
    } else {
        format!("{name}={value}\n")
    }
}

fn github_actions(files: &GitHubFiles, line: &Line<'_>, delimiter: &str) -> Vec<Effect> {
    let command = |name: &str, data: &str| print(format!("::{name}::{}", github_escape_data(data)));
    match *line {
        Line::Info(text) => prefixed("", text),
        // The runner shows `::debug::` lines only with RUNNER_DEBUG (ACTIONS_STEP_DEBUG) set; the
        // console also renders them only then.
        Line::Debug(text) => text
            .split('\n')
            .flat_map(|l| command("debug", l.strip_suffix('\r').unwrap_or(l)))
            .collect(),
        Line::Warning(text) => command("warning", text),
        Line::Error(text) => command("error", text),
        Line::Section(text) => prefixed("", text),
        Line::GroupStart(text) => command("group", &text.replace(['\r', '\n'], " ")),
        Line::GroupEnd => print("::endgroup::".to_owned()),
        Line::Secret(value) => command("add-mask", value),
        Line::Output { name, value, .. } => match files.output {
            Some(_) => vec![Effect::Append(
                HostFile::Output,
                github_output_entry(name, value, delimiter),
            )],
            None => command(
                "warning",
                &format!("GITHUB_OUTPUT is not set, so the output '{name}' cannot be set"),
            ),
        },
        // No progress bar on GitHub: the log lines beside each update say it.
        Line::Progress { .. } => Vec::new(),
        Line::Summary(path) => match files.summary {
            Some(_) => vec![Effect::AppendFileContents {
                from: path.to_owned(),
                to: HostFile::Summary,
            }],
            None => print(format!("run summary written to {}", path.display())),
        },
        Line::Attach(path) => print(format!(
            "kept {} (upload it with actions/upload-artifact to keep it after the job)",
            path.display()
        )),
        // The exit code decides; a failure's message was already an `::error::`.
        Line::Complete { .. } => Vec::new(),
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn terminal(color: bool, line: &Line<'_>) -> Vec<Effect> {
    let paint = |style: &str, text: &str| {
        if color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    // The prefix on the first line, the rest indented under it.
    let labelled = |label: &str, style: &str, text: &str| -> Vec<Effect> {
        let prefix = paint(style, label);
        text.split('\n')
            .enumerate()
            .map(|(i, l)| {
                let l = l.strip_suffix('\r').unwrap_or(l);
                if i == 0 {
                    Effect::Print(format!("{prefix} {l}"))
                } else {
                    Effect::Print(format!("{:width$} {l}", "", width = label.len()))
                }
            })
            .collect()
    };
    match *line {
        Line::Info(text) => prefixed("", text),
        Line::Debug(text) => text
            .split('\n')
            .map(|l| Effect::Print(paint(DIM, &format!("debug: {}", l.trim_end_matches('\r')))))
            .collect(),
        Line::Warning(text) => labelled("warning:", YELLOW, text),
        Line::Error(text) => labelled("error:", RED, text),
        Line::Section(text) | Line::GroupStart(text) => print(paint(
            BOLD,
            &format!("==> {}", text.replace(['\r', '\n'], " ")),
        )),
        Line::GroupEnd | Line::Progress { .. } | Line::Complete { .. } => Vec::new(),
        // Never printed: the console masks it in everything else.
        Line::Secret(_) => Vec::new(),
        Line::Output { name, value, .. } => prefixed("", &format!("{name} = {value}")),
        Line::Summary(path) => print(format!("run summary written to {}", path.display())),
        Line::Attach(path) => print(format!("kept {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(host: &Host, line: Line<'_>) -> Vec<String> {
        host.render(&line, "EOF_1")
            .into_iter()
            .map(|e| match e {
                Effect::Print(s) => s,
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn github() -> Host {
        Host::GitHubActions(GitHubFiles {
            output: Some("/runner/out".into()),
            summary: Some("/runner/summary.md".into()),
        })
    }

    #[test]
    fn detection_prefers_the_agent_then_github_then_a_terminal() {
        let env = |pairs: &[(&str, &str)]| Environment::from_pairs(pairs.iter().copied());
        assert_eq!(
            Host::detect(
                &env(&[("TF_BUILD", "True"), ("GITHUB_ACTIONS", "true")]),
                true
            ),
            Host::AzurePipelines
        );
        assert_eq!(
            Host::detect(
                &env(&[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_OUTPUT", "/o"),
                    ("GITHUB_STEP_SUMMARY", "/s")
                ]),
                false
            ),
            Host::GitHubActions(GitHubFiles {
                output: Some("/o".into()),
                summary: Some("/s".into())
            })
        );
        assert_eq!(
            Host::detect(&env(&[]), true),
            Host::Terminal { color: true }
        );
        assert_eq!(
            Host::detect(&env(&[("NO_COLOR", "1")]), true),
            Host::Terminal { color: false }
        );
        assert_eq!(
            Host::detect(&env(&[]), false),
            Host::Terminal { color: false }
        );
        assert!(Host::detect(&env(&[("GITHUB_ACTIONS", "false")]), false).is_terminal());
    }

    #[test]
    fn azure_pipelines_speaks_logging_commands() {
        let host = Host::AzurePipelines;
        assert_eq!(lines(&host, Line::Info("a\r\nb")), ["a", "b"]);
        assert_eq!(
            lines(&host, Line::Debug("x\ny")),
            ["##[debug]x", "##[debug]y"]
        );
        assert_eq!(
            lines(&host, Line::Warning("w;1")),
            ["##vso[task.logissue type=warning]w%3B1"]
        );
        assert_eq!(
            lines(&host, Line::Error("e\nf")),
            ["##vso[task.logissue type=error]e%0Af"]
        );
        assert_eq!(lines(&host, Line::GroupStart("G")), ["##[group]G"]);
        assert_eq!(lines(&host, Line::GroupEnd), ["##[endgroup]"]);
        assert_eq!(lines(&host, Line::Section("S")), ["##[section]S"]);
        assert_eq!(
            lines(&host, Line::Secret("s%")),
            ["##vso[task.setsecret]s%AZP25"]
        );
        assert_eq!(
            lines(
                &host,
                Line::Output {
                    name: "imageUri",
                    value: "/x",
                    is_output: true
                }
            ),
            ["##vso[task.setvariable variable=imageUri;isSecret=false;isOutput=true]/x"]
        );
        assert_eq!(
            lines(
                &host,
                Line::Progress {
                    percent: 40,
                    operation: "Building"
                }
            ),
            ["##vso[task.setprogress value=40]Building"]
        );
        assert_eq!(
            lines(&host, Line::Summary(Path::new("/t/s.md"))),
            ["##vso[task.uploadsummary]/t/s.md"]
        );
        assert_eq!(
            lines(&host, Line::Attach(Path::new("/t/log"))),
            ["##vso[task.uploadfile]/t/log"]
        );
        assert_eq!(
            lines(
                &host,
                Line::Complete {
                    result: TaskResult::Failed,
                    message: "m"
                }
            ),
            ["##vso[task.complete result=Failed]m"]
        );
    }

    #[test]
    fn github_actions_speaks_workflow_commands_and_files() {
        let host = github();
        assert_eq!(lines(&host, Line::Info("a\nb")), ["a", "b"]);
        assert_eq!(
            lines(&host, Line::Debug("x\ny")),
            ["::debug::x", "::debug::y"]
        );
        assert_eq!(
            lines(&host, Line::Warning("50% done\nnext")),
            ["::warning::50%25 done%0Anext"]
        );
        assert_eq!(lines(&host, Line::Error("e\r\nf")), ["::error::e%0D%0Af"]);
        assert_eq!(
            lines(&host, Line::GroupStart("Staging")),
            ["::group::Staging"]
        );
        assert_eq!(lines(&host, Line::GroupEnd), ["::endgroup::"]);
        assert_eq!(
            lines(&host, Line::Secret("p%s\ns")),
            ["::add-mask::p%25s%0As"]
        );
        assert_eq!(
            host.render(
                &Line::Output {
                    name: "pirSku",
                    value: "22_04-lts",
                    is_output: true
                },
                "EOF_1"
            ),
            [Effect::Append(
                HostFile::Output,
                "pirSku=22_04-lts\n".into()
            )]
        );
        assert_eq!(
            host.render(
                &Line::Output {
                    name: "multi",
                    value: "a\nb",
                    is_output: true
                },
                "EOF_1"
            ),
            [Effect::Append(
                HostFile::Output,
                "multi<<EOF_1\na\nb\nEOF_1\n".into()
            )]
        );
        assert_eq!(
            host.render(&Line::Summary(Path::new("/t/s.md")), "d"),
            [Effect::AppendFileContents {
                from: "/t/s.md".into(),
                to: HostFile::Summary
            }]
        );
        for silent in [
            Line::Progress {
                percent: 1,
                operation: "x",
            },
            Line::Complete {
                result: TaskResult::Failed,
                message: "m",
            },
        ] {
            assert!(host.render(&silent, "d").is_empty(), "{silent:?}");
        }
        // Without the runner's files, say so rather than lose the output silently.
        let bare = Host::GitHubActions(GitHubFiles::default());
        let out = lines(
            &bare,
            Line::Output {
                name: "imageUri",
                value: "v",
                is_output: true,
            },
        );
        assert_eq!(out.len(), 1);
        assert!(
            out[0].starts_with("::warning::GITHUB_OUTPUT is not set"),
            "{out:?}"
        );
    }

    #[test]
    fn no_host_but_the_agent_prints_vso_commands() {
        let every = [
            Line::Info("i"),
            Line::Debug("d"),
            Line::Warning("w"),
            Line::Error("e"),
            Line::Section("s"),
            Line::GroupStart("g"),
            Line::GroupEnd,
            Line::Secret("secret"),
            Line::Output {
                name: "n",
                value: "v",
                is_output: true,
            },
            Line::Progress {
                percent: 3,
                operation: "o",
            },
            Line::Summary(Path::new("/s.md")),
            Line::Attach(Path::new("/a.log")),
            Line::Complete {
                result: TaskResult::Failed,
                message: "m",
            },
        ];
        for host in [
            github(),
            Host::Terminal { color: false },
            Host::Terminal { color: true },
        ] {
            for line in &every {
                for effect in host.render(line, "D") {
                    let text = format!("{effect:?}");
                    assert!(
                        !text.contains("##vso[") && !text.contains("##["),
                        "{host:?}: {text}"
                    );
                    if host.is_terminal() {
                        assert!(!text.contains("::"), "{text}");
                        assert!(!text.contains("secret"), "a terminal printed the secret");
                    }
                }
            }
        }
    }

    #[test]
    fn a_terminal_gets_plain_human_output() {
        let host = Host::Terminal { color: false };
        assert_eq!(
            lines(&host, Line::Error("it broke\nbadly")),
            ["error: it broke", "       badly"]
        );
        assert_eq!(lines(&host, Line::Warning("careful")), ["warning: careful"]);
        assert_eq!(lines(&host, Line::GroupStart("Staging")), ["==> Staging"]);
        assert!(lines(&host, Line::GroupEnd).is_empty());
        assert!(lines(&host, Line::Secret("s3cret")).is_empty());
        assert_eq!(lines(&host, Line::Debug("x")), ["debug: x"]);
        assert_eq!(
            lines(
                &host,
                Line::Output {
                    name: "imageUri",
                    value: "/subscriptions/x",
                    is_output: true
                }
            ),
            ["imageUri = /subscriptions/x"]
        );
        let coloured = Host::Terminal { color: true };
        assert_eq!(
            lines(&coloured, Line::Error("e")),
            ["\x1b[1;31merror:\x1b[0m e"]
        );
        assert_eq!(
            lines(&coloured, Line::Warning("w")),
            ["\x1b[1;33mwarning:\x1b[0m w"]
        );
        assert_eq!(lines(&coloured, Line::Info("plain")), ["plain"]);
    }

    #[test]
    fn github_data_escaping_round_trips() {
        for value in ["", "100%", "%0A", "a\r\nb", "%25%0D", "ünï ✓"] {
            let escaped = github_escape_data(value);
            assert!(!escaped.contains(['\r', '\n']));
            assert_eq!(github_unescape_data(&escaped), value);
        }
    }
}
