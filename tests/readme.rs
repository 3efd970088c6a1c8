//! The README's input and output tables are generated from `task.json`: this test renders them
//! and fails when the README differs. `UPDATE_README=1 cargo test --test readme` (or
//! `scripts/readme-tables`) rewrites them between their markers.

use std::path::PathBuf;

use serde_json::Value;

const INPUTS: (&str, &str) = (
    "<!-- inputs: generated from task.json -->",
    "<!-- /inputs -->",
);
const OUTPUTS: (&str, &str) = (
    "<!-- outputs: generated from task.json -->",
    "<!-- /outputs -->",
);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Table cells hold one line; `|` would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn input_table(task: &Value) -> String {
    let groups: Vec<(String, String)> = task["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|g| {
                    (
                        g["name"].as_str().unwrap().to_owned(),
                        g["displayName"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = String::from(
        "| input | label | type | default | required | description |\n|---|---|---|---|---|---|\n",
    );
    for input in task["inputs"].as_array().unwrap() {
        let default = match &input["defaultValue"] {
            Value::Bool(b) => format!("`{b}`"),
            Value::String(s) if !s.is_empty() => format!("`{s}`"),
            _ => String::new(),
        };
        let mut description = input["helpMarkDown"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(options) = input["options"].as_object() {
            let names: Vec<String> = options.keys().map(|k| format!("`{k}`")).collect();
            let editable = input["properties"]["EditableOptions"] == "True";
            description.push_str(&format!(
                " Choices: {}{}.",
                names.join(", "),
                if editable {
                    " (or any other value)"
                } else {
                    ""
                }
            ));
        }
        if let Some(rule) = input["visibleRule"].as_str() {
            description.push_str(&format!(" Shown when `{rule}`."));
        }
        if let Some(group) = input["groupName"].as_str() {
            let shown = groups
                .iter()
                .find(|(n, _)| n == group)
                .map(|(_, d)| d.as_str())
                .unwrap_or(group);
            description.push_str(&format!(" Group: {shown}."));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            input["name"].as_str().unwrap(),
            cell(input["label"].as_str().unwrap()),
            cell(input["type"].as_str().unwrap()),
            cell(&default),
            if input["required"] == true { "yes" } else { "" },
            cell(&description),
        ));
    }
    out
}

fn output_table(task: &Value) -> String {
    let mut out = String::from("| variable | description |\n|---|---|\n");
    for output in task["outputVariables"].as_array().unwrap() {
        out.push_str(&format!(
            "| `{}` | {} |\n",
            output["name"].as_str().unwrap(),
            cell(output["description"].as_str().unwrap_or_default()),
        ));
    }
    out
}

/// `readme` with the text between the markers replaced by `table`.
fn splice(readme: &str, (begin, end): (&str, &str), table: &str) -> String {
    let start = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README.md has no {begin}"))
        + begin.len();
    let stop = readme[start..]
        .find(end)
        .unwrap_or_else(|| panic!("README.md has no {end} after {begin}"))
        + start;
    format!("{}\n{}{}", &readme[..start], table, &readme[stop..])
}

#[test]
fn readme_tables_match_task_json() {
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("task.json")).unwrap()).unwrap();
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let expected = splice(
        &splice(&readme, INPUTS, &input_table(&task)),
        OUTPUTS,
        &output_table(&task),
    );
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    if readme != expected {
        let first = readme
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "README.md's input/output tables differ from task.json (first at line {}):\n  README: {}\n  wanted: {}\nRun scripts/readme-tables to regenerate them.",
            first + 1,
            readme.lines().nth(first).unwrap_or(""),
            expected.lines().nth(first).unwrap_or("")
        );
    }
}

#[test]
fn the_tables_cover_every_input_and_output() {
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("task.json")).unwrap()).unwrap();
    let table = input_table(&task);
    for spec in aib_task::inputs::input_specs() {
        assert!(
            table.contains(&format!("| `{}` |", spec.name)),
            "{}",
            spec.name
        );
    }
    let outputs = output_table(&task);
    for name in ["imageUri", "pirVersion", "templateId"] {
        assert!(outputs.contains(&format!("| `{name}` |")));
    }
    assert_eq!(cell("a|b\nc"), "a\\|b c");
}
