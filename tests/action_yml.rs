//! `action.yml` (the GitHub Action's metadata) is generated from `task.json`, like the README's
//! tables: the task's inputs under the same names with the same help and defaults (all but the
//! service connection `ibSubscription`, which GitHub has no equivalent of), the task's outputs,
//! and the launcher `run.js` on the node24 runtime. This test renders it and fails when the file
//! differs; `UPDATE_ACTION_YML=1 cargo test --test action_yml` (or `scripts/readme-tables`)
//! rewrites it.
//!
//! Strings are written as JSON strings, which are YAML double-quoted scalars, so no help text can
//! break the YAML.

use std::path::PathBuf;

use serde_json::Value;

/// Inputs of the task that the action does not offer, and why.
const NOT_IN_THE_ACTION: &[(&str, &str)] = &[(
    "ibSubscription",
    "an Azure Pipelines service connection; on GitHub sign in with clientId/tenantId/subscriptionId",
)];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn task_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("task.json")).unwrap()).unwrap()
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn default_text(input: &Value) -> Option<String> {
    match &input["defaultValue"] {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// task.json's help in a workflow's words where it speaks of Azure Pipelines.
fn for_github(text: &str) -> String {
    [
        (
            "`$(System.DefaultWorkingDirectory)/_webapp/drop`. Relative paths resolve against the pipeline's default working directory.",
            "`dist/webapp`. Relative paths resolve against `GITHUB_WORKSPACE`.",
        ),
        ("in the connection's subscription", "in the subscription"),
        ("`webapp-$(Build.BuildId)`", "`webapp-<run id>`"),
        ("`t_<release or build id>_", "`t_<run id>_"),
    ]
    .iter()
    .fold(text.to_owned(), |text, (azure, github)| text.replace(azure, github))
}

fn description(input: &Value) -> String {
    let mut text = for_github(input["helpMarkDown"].as_str().unwrap_or_default());
    if let Some(options) = input["options"].as_object() {
        let names: Vec<String> = options.keys().map(|k| format!("`{k}`")).collect();
        let editable = input["properties"]["EditableOptions"] == "True";
        text.push_str(&format!(
            " Choices: {}{}.",
            names.join(", "),
            if editable {
                " (or any other value)"
            } else {
                ""
            }
        ));
    }
    text
}

fn render(task: &Value) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated from task.json by tests/action_yml.rs: edit task.json, then run scripts/readme-tables.\n",
    );
    out.push_str(
        "# The action runs the same aib-task binary as the Azure Pipelines task (README: \"GitHub Actions\").\n",
    );
    out.push_str("name: \"Azure VM Image Builder (aib-task)\"\n");
    out.push_str(&format!(
        "description: {}\n",
        quoted(
            "Build a VM image with Azure VM Image Builder: stage a folder, customize a marketplace, managed or gallery image, distribute it, clean up."
        )
    ));
    out.push_str(&format!(
        "author: {}\n",
        quoted(task["author"].as_str().unwrap())
    ));
    out.push_str("branding:\n  icon: \"layers\"\n  color: \"blue\"\n");
    out.push_str("inputs:\n");
    for input in task["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        if NOT_IN_THE_ACTION.iter().any(|(n, _)| *n == name) {
            continue;
        }
        // Conditionally required inputs (a visibleRule) are not required in general.
        let required = input["required"] == true && input["visibleRule"].is_null();
        out.push_str(&format!("  {name}:\n"));
        out.push_str(&format!(
            "    description: {}\n",
            quoted(&description(input))
        ));
        out.push_str(&format!("    required: {required}\n"));
        if let Some(default) = default_text(input) {
            out.push_str(&format!("    default: {}\n", quoted(&default)));
        }
    }
    out.push_str("outputs:\n");
    for output in task["outputVariables"].as_array().unwrap() {
        out.push_str(&format!(
            "  {}:\n    description: {}\n",
            output["name"].as_str().unwrap(),
            quoted(output["description"].as_str().unwrap_or_default())
        ));
    }
    out.push_str("runs:\n  using: \"node24\"\n  main: \"run.js\"\n");
    out
}

#[test]
fn action_yml_matches_task_json() {
    let expected = render(&task_json());
    let path = root().join("action.yml");
    if std::env::var_os("UPDATE_ACTION_YML").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "action.yml differs from what task.json gives (first at line {}):\n  file:   {}\n  wanted: {}\nRun scripts/readme-tables to regenerate it.",
            first + 1,
            actual.lines().nth(first).unwrap_or(""),
            expected.lines().nth(first).unwrap_or("")
        );
    }
}

/// Every input the binary reads is in the action (under the name GitHub turns into the
/// `INPUT_<NAME>` the binary reads), in the binary's order, save the documented exceptions.
#[test]
fn the_action_offers_every_input_the_binary_reads_and_the_task_s_outputs() {
    let text = render(&task_json());
    let in_action: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "inputs:")
        .skip(1)
        .take_while(|l| *l != "outputs:")
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    let read: Vec<String> = aib_task::inputs::input_specs()
        .into_iter()
        .filter(|s| !NOT_IN_THE_ACTION.iter().any(|(n, _)| *n == s.name))
        .map(|s| {
            // GitHub: INPUT_ + the name upper-cased with spaces as '_'.
            assert_eq!(
                s.env,
                format!("INPUT_{}", s.name.replace(' ', "_").to_uppercase()),
                "{} is read from the variable GitHub sets for it",
                s.name
            );
            s.name
        })
        .collect();
    assert_eq!(in_action, read);
    for name in [
        "imageUri",
        "pirPublisher",
        "pirOffer",
        "pirSku",
        "pirVersion",
        "templateName",
        "templateId",
    ] {
        assert!(
            text.contains(&format!("\n  {name}:\n    description: ")),
            "{name}"
        );
    }
    assert!(text.contains("  using: \"node24\"\n  main: \"run.js\"\n"));
    // The defaults are the binary's own.
    assert!(text.contains("  environment:\n"));
    for (name, default) in [
        ("baseImageVersion", "latest"),
        ("environment", "AzureCloud"),
    ] {
        assert_eq!(aib_task::inputs::default_value(name), Some(default));
        let block = text.split(&format!("\n  {name}:\n")).nth(1).unwrap();
        let block: String = block.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(
            block.contains(&format!("default: \"{default}\"")),
            "{name}: {block}"
        );
    }
}
