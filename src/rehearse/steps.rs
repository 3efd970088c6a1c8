//! The steps a rehearsal runs: the template's own `customize` list (and its in-VM validation),
//! read in order and turned into what can be done on a Linux machine without Azure. Pure: the
//! template is built by [`crate::image_template::build_template`] with the local archive URL,
//! so the download and extraction lines are exactly those the build VM would run.

use crate::image_template::{Customizer, ImageTemplate};

/// One step, named as Image Builder's `customization.log` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    /// The customizer type: `Shell`, `File`, `PowerShell`, …
    pub kind: &'static str,
    pub action: Action,
}

/// What the rehearsal does for a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Inline lines, run as one script under `/bin/sh -e`, as Packer's shell provisioner runs
    /// a Shell customizer's `inline`.
    Inline(Vec<String>),
    /// A script fetched from `uri` (a Shell customizer's `scriptUri`), checked against its
    /// checksum when one is given, then run as an executable file.
    ScriptAt { uri: String, sha256: Option<String> },
    /// A file fetched from `uri` and put at `destination` (a File customizer).
    FileFrom {
        uri: String,
        destination: String,
        sha256: Option<String>,
    },
    /// Not rehearsed; the note says why.
    Skip(String),
}

/// Packer's default `inline_shebang` for the shell provisioner, which Image Builder's Shell
/// customizer uses: each step is its own script, stopped by its first failing command.
pub const INLINE_SHEBANG: &str = "#!/bin/sh -e";

/// The script file for inline lines: the shebang, then each line.
pub fn inline_script(lines: &[String]) -> String {
    let mut text = String::from(INLINE_SHEBANG);
    text.push('\n');
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The steps of `template`, in the order the build VM would run them.
pub fn from_template(template: &ImageTemplate) -> Vec<Step> {
    let mut steps: Vec<Step> = template
        .properties
        .customize
        .iter()
        .map(from_customizer)
        .collect();
    if let Some(validate) = &template.properties.validate {
        steps.extend(validate.in_vm_validations.iter().map(from_customizer));
    }
    steps
}

fn named(name: &str, fallback: &str) -> String {
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name.to_owned()
    }
}

fn shell(name: &str, inline: &[String], script_uri: &Option<String>, sha: &Option<String>) -> Step {
    Step {
        name: named(name, "(unnamed Shell step)"),
        kind: "Shell",
        action: match script_uri {
            Some(uri) if inline.is_empty() => Action::ScriptAt {
                uri: uri.clone(),
                sha256: sha.clone(),
            },
            _ => Action::Inline(inline.to_vec()),
        },
    }
}

fn file(name: &str, source_uri: &str, destination: &str, sha: &Option<String>) -> Step {
    Step {
        name: named(name, "(unnamed File step)"),
        kind: "File",
        action: Action::FileFrom {
            uri: source_uri.to_owned(),
            destination: destination.to_owned(),
            sha256: sha.clone(),
        },
    }
}

const NO_WINDOWS: &str =
    "PowerShell runs on Windows build VMs, which a rehearsal cannot stand in for: not rehearsed";

fn from_customizer(customizer: &Customizer) -> Step {
    match customizer {
        Customizer::Shell {
            name,
            inline,
            script_uri,
            sha256_checksum,
        } => shell(name, inline, script_uri, sha256_checksum),
        Customizer::File {
            name,
            source_uri,
            destination,
            sha256_checksum,
        } => file(name, source_uri, destination, sha256_checksum),
        Customizer::PowerShell { name, .. } => Step {
            name: named(name, "(unnamed PowerShell step)"),
            kind: "PowerShell",
            action: Action::Skip(NO_WINDOWS.into()),
        },
        Customizer::WindowsRestart { name, .. } => Step {
            name: named(name, "(unnamed WindowsRestart step)"),
            kind: "WindowsRestart",
            action: Action::Skip("a rehearsal cannot restart a machine: not rehearsed".into()),
        },
        Customizer::WindowsUpdate { name, .. } => Step {
            name: named(name, "(unnamed WindowsUpdate step)"),
            kind: "WindowsUpdate",
            action: Action::Skip(NO_WINDOWS.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_step(name: &str, inline: &[&str]) -> Customizer {
        Customizer::Shell {
            name: name.into(),
            inline: inline.iter().map(|s| s.to_string()).collect(),
            script_uri: None,
            sha256_checksum: None,
        }
    }

    #[test]
    fn inline_scripts_stop_at_the_first_failure() {
        let text = inline_script(&["echo one".into(), "false".into()]);
        assert_eq!(text, "#!/bin/sh -e\necho one\nfalse\n");
    }

    #[test]
    fn each_customizer_becomes_a_step_in_order() {
        let customizers = [
            Customizer::File {
                name: "get".into(),
                source_uri: "http://127.0.0.1:1/x/a.zip".into(),
                destination: "/tmp/a.zip".into(),
                sha256_checksum: Some("ab".into()),
            },
            shell_step("extract", &["unzip"]),
            Customizer::Shell {
                name: String::new(),
                inline: vec![],
                script_uri: Some("https://example.com/s.sh".into()),
                sha256_checksum: None,
            },
            Customizer::PowerShell {
                name: "win".into(),
                inline: vec!["Write-Host".into()],
                script_uri: None,
                sha256_checksum: None,
                run_elevated: false,
                run_as_system: false,
                valid_exit_codes: None,
            },
            Customizer::WindowsRestart {
                name: "restart".into(),
                restart_command: None,
                restart_check_command: None,
                restart_timeout: None,
            },
        ];
        let steps: Vec<Step> = customizers.iter().map(from_customizer).collect();
        assert_eq!(steps[0].kind, "File");
        assert!(
            matches!(&steps[0].action, Action::FileFrom { destination, .. } if destination == "/tmp/a.zip")
        );
        assert_eq!(steps[1].action, Action::Inline(vec!["unzip".into()]));
        assert_eq!(steps[2].name, "(unnamed Shell step)");
        assert!(
            matches!(&steps[2].action, Action::ScriptAt { uri, .. } if uri == "https://example.com/s.sh")
        );
        assert!(matches!(&steps[3].action, Action::Skip(note) if note.contains("Windows")));
        assert!(matches!(&steps[4].action, Action::Skip(note) if note.contains("restart")));
    }
}
