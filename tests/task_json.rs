//! `task.json` against what it describes: the task-lib JSON schema (read from
//! `../shared/specs/azure-pipelines-task-lib/tasks.schema.json`, or under `AIB_SPECS_DIR`;
//! skipped with a message when absent, a failure when `CI` is set), the inputs the binary reads (`aib_task::inputs::input_specs()`) with the defaults it
//! assumes (`aib_task::inputs::default_value`), the output variables it sets, and the launcher.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aib_task::agent::PipelineContext;
use aib_task::build::outputs::Outputs;
use aib_task::inputs::{TaskInputs, default_value, input_specs};
use aib_task::plan::BuildPlan;
use clap::Parser;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn task_json() -> Value {
    let text = std::fs::read_to_string(root().join("task.json")).expect("task.json at the root");
    serde_json::from_str(&text).expect("task.json is JSON")
}

fn task_inputs(task: &Value) -> &Vec<Value> {
    task["inputs"].as_array().expect("inputs is an array")
}

/// A default as the agent passes it: booleans and strings alike become strings.
fn default_of(input: &Value) -> String {
    match &input["defaultValue"] {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        other => panic!(
            "{}: defaultValue {other} is neither string nor boolean",
            input["name"]
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The schema check: a small draft-04 validator for the keywords tasks.schema.json uses. An
// unknown keyword fails the test, so a newer schema cannot pass by being half understood.

fn validate(schema: &Value, value: &Value, root: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    for (keyword, rule) in obj {
        match keyword.as_str() {
            "$schema" | "id" | "title" | "description" | "default" | "definitions" => {}
            "$ref" => {
                let pointer = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix('#'))
                    .expect("local $ref");
                let target = root.pointer(pointer).expect("$ref resolves");
                validate(target, value, root, path, errors);
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("odd type rule at {path}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "string" => value.is_string(),
                    "boolean" => value.is_boolean(),
                    "number" => value.is_number(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "null" => value.is_null(),
                    other => panic!("unknown type {other}"),
                });
                if !ok {
                    errors.push(format!("{path}: expected {types:?}, got {value}"));
                }
            }
            "enum" => {
                if !rule.as_array().unwrap().contains(value) {
                    errors.push(format!("{path}: {value} is not one of {rule}"));
                }
            }
            "pattern" => {
                if let Some(s) = value.as_str() {
                    let re = regex::Regex::new(rule.as_str().unwrap()).unwrap();
                    if !re.is_match(s) {
                        errors.push(format!("{path}: '{s}' does not match {rule}"));
                    }
                }
            }
            "required" => {
                if let Some(o) = value.as_object() {
                    for name in rule.as_array().unwrap() {
                        if !o.contains_key(name.as_str().unwrap()) {
                            errors.push(format!("{path}: {name} is required"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = value.as_object() {
                    for (name, sub) in rule.as_object().unwrap() {
                        if let Some(v) = o.get(name) {
                            validate(sub, v, root, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let (Some(o), Some(false)) = (value.as_object(), rule.as_bool()) {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for name in o.keys() {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            errors.push(format!("{path}: property '{name}' is not allowed"));
                        }
                    }
                } else if let (Some(o), true) = (value.as_object(), rule.is_object()) {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for (name, v) in o {
                        if !known.is_some_and(|k| k.contains_key(name)) {
                            validate(rule, v, root, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        validate(rule, item, root, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            "anyOf" => {
                let branches = rule.as_array().unwrap();
                if !branches.iter().any(|b| {
                    let mut e = Vec::new();
                    validate(b, value, root, path, &mut e);
                    e.is_empty()
                }) {
                    errors.push(format!("{path}: {value} matches none of anyOf"));
                }
            }
            other => panic!("the schema uses '{other}' at {path}, which this check does not know"),
        }
    }
}

fn schema_errors(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(schema, value, schema, "task", &mut errors);
    errors
}

fn schema() -> Option<Value> {
    let path =
        aib_emulator::swagger::specs_root().join("azure-pipelines-task-lib/tasks.schema.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(_) => {
            aib_emulator::swagger::missing_spec(&format!(
                "{} (task.json is not checked against the schema)",
                path.display()
            ));
            None
        }
    }
}

#[test]
fn task_json_is_valid_against_the_task_lib_schema() {
    let Some(schema) = schema() else { return };
    let errors = schema_errors(&schema, &task_json());
    assert!(errors.is_empty(), "task.json:\n{}", errors.join("\n"));
}

#[test]
fn the_schema_check_finds_mistakes() {
    let Some(schema) = schema() else { return };
    let mut task = task_json();
    task["category"] = "Deployment".into();
    task["inputs"][0]["type"] = "dropdown".into();
    task["inputs"][1]["colour"] = "blue".into();
    task["version"].as_object_mut().unwrap().remove("Patch");
    task["id"] = "not-a-guid".into();
    let errors = schema_errors(&schema, &task);
    for expected in [
        "task.category",
        "task.inputs[0].type",
        "'colour' is not allowed",
        "\"Patch\" is required",
        "task.id",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected} not reported in {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// No drift between task.json and the binary.

#[test]
fn task_json_declares_exactly_the_inputs_the_binary_reads_in_the_same_order() {
    let task = task_json();
    let declared: Vec<&str> = task_inputs(&task)
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let read: Vec<String> = input_specs().into_iter().map(|s| s.name).collect();
    let declared_set: BTreeSet<&str> = declared.iter().copied().collect();
    let read_set: BTreeSet<&str> = read.iter().map(String::as_str).collect();
    assert_eq!(
        declared_set.difference(&read_set).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "declared in task.json but never read by the binary"
    );
    assert_eq!(
        read_set.difference(&declared_set).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "read by the binary but missing from task.json"
    );
    assert_eq!(declared, read, "same order as src/inputs.rs");
}

#[test]
fn task_json_defaults_are_the_binarys_defaults() {
    let task = task_json();
    for input in task_inputs(&task) {
        let name = input["name"].as_str().unwrap();
        assert_eq!(
            default_of(input),
            default_value(name).unwrap_or(""),
            "default of {name}: task.json vs aib_task::inputs::default_value"
        );
        let boolean = input["type"] == "boolean";
        assert_eq!(
            boolean,
            matches!(default_value(name), Some("true" | "false")),
            "{name}: a boolean input has a true/false default and the reverse"
        );
        if boolean {
            assert!(
                input["defaultValue"].is_boolean(),
                "{name}: boolean default as a JSON boolean"
            );
        }
    }
}

#[test]
fn inputs_after_vm_size_are_in_a_group_and_every_input_has_help_with_an_example() {
    let task = task_json();
    let groups: Vec<&str> = task["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["advanced", "validation", "buildVm", "signIn"]);
    let mut after_vm_size = false;
    for input in task_inputs(&task) {
        let name = input["name"].as_str().unwrap();
        let group = input["groupName"].as_str();
        if after_vm_size {
            assert!(
                group.is_some_and(|g| groups.contains(&g)),
                "{name} belongs to a group after the original inputs"
            );
        } else {
            assert_eq!(group, None, "{name} is one of the original inputs");
        }
        after_vm_size |= name == "vmSize";
        let help = input["helpMarkDown"].as_str().unwrap_or_default();
        assert!(
            help.contains('`'),
            "{name}: help shows the expected form or an example in `code`"
        );
        assert!(
            !input["label"].as_str().unwrap().is_empty(),
            "{name} has a label"
        );
        // Choices offered by the task are choices the binary accepts.
        if let Some(options) = input["options"].as_object() {
            for option in options.keys() {
                if name == "baseImage" {
                    continue; // free-form Publisher:Offer:Sku
                }
                let help = input_specs()
                    .into_iter()
                    .find(|s| s.name == name)
                    .unwrap()
                    .help;
                assert!(
                    help.contains(&format!("`{option}`")),
                    "{name}: option {option} is named in the binary's help: {help}"
                );
            }
        }
    }
    assert!(after_vm_size);
}

#[test]
fn visible_rules_name_real_inputs_and_their_options() {
    let task = task_json();
    let inputs = task_inputs(&task);
    let rule = regex::Regex::new(r"^([A-Za-z]+) = ([A-Za-z_]+)$").unwrap();
    for input in inputs {
        let Some(visible) = input["visibleRule"].as_str() else {
            continue;
        };
        for clause in visible.split("&&").map(str::trim) {
            let caps = rule
                .captures(clause)
                .unwrap_or_else(|| panic!("{visible}: unexpected form"));
            let other = inputs
                .iter()
                .find(|i| i["name"] == caps[1])
                .unwrap_or_else(|| panic!("{visible}: no input {}", &caps[1]));
            let value = &caps[2];
            let known = other["options"]
                .as_object()
                .is_some_and(|o| o.contains_key(value))
                || (other["type"] == "boolean" && (value == "true" || value == "false"));
            assert!(known, "{visible}: {value} is not a value of {}", &caps[1]);
        }
    }
}

/// Setting every input the agent fills in with its default gives the same plan as leaving it
/// unset, so task.json's defaults change nothing the binary would have done on its own.
#[test]
fn explicit_defaults_build_the_same_plan_as_unset_inputs() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        inputs: TaskInputs,
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("drop")).unwrap();
    std::fs::write(dir.path().join("drop/app.conf"), "listen=8080\n").unwrap();
    let context = PipelineContext {
        working_directory: dir.path().to_owned(),
        build_id: Some("42".into()),
        ..Default::default()
    };
    let rid = |t: &str| format!("/subscriptions/{SUB}/resourceGroups/rg/providers/{t}");
    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    let identity = rid("Microsoft.ManagedIdentity/userAssignedIdentities/aib");
    let gallery = rid("Microsoft.Compute/galleries/g/images/web");
    let image = rid("Microsoft.Compute/images/web");
    let required = |distribution: &[&str]| {
        let mut args: Vec<String> = [
            "--ib-azure-resource-group=rg",
            "--ib-location=westeurope",
            "--base-image=Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2",
            "--package-path=drop",
            "--storage-account-name=aibartifacts01",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--managed-identity={identity}"));
        args.extend(distribution.iter().map(|s| s.to_string()));
        args
    };
    let task = task_json();
    for distribution in [
        vec![
            "--distribute-type=managedimage".to_owned(),
            format!("--image-id-for-distribute={image}"),
            "--managed-image-location=westeurope".to_owned(),
        ],
        vec![
            "--distribute-type=sig".to_owned(),
            format!("--gallery-image-id={gallery}"),
        ],
        vec!["--distribute-type=vhd".to_owned()],
    ] {
        let distribution: Vec<&str> = distribution.iter().map(String::as_str).collect();
        let bare = required(&distribution);
        let mut with_defaults = bare.clone();
        for input in task_inputs(&task) {
            let name = input["name"].as_str().unwrap();
            let flag = input_specs()
                .into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .flag;
            if !bare.iter().any(|a| a.starts_with(&format!("--{flag}="))) {
                with_defaults.push(format!("--{flag}={}", default_of(input)));
            }
        }
        let plan = |args: &[String]| {
            let cli = Cli::try_parse_from(
                std::iter::once("aib-task".to_owned()).chain(args.iter().cloned()),
            )
            .unwrap();
            let stamp = aib_task::names::Stamp::new(1764219600000, &context, &[0, 0, 0, 0]);
            BuildPlan::from_inputs(&cli.inputs, SUB, &context, &stamp)
                .unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
        };
        assert_eq!(
            plan(&bare),
            plan(&with_defaults),
            "{distribution:?}: defaults change the plan"
        );
    }
}

#[test]
fn output_variables_are_those_the_binary_sets() {
    let task = task_json();
    let declared: Vec<&str> = task["outputVariables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    let every = Outputs {
        platform_image: Some(Default::default()),
        ..Default::default()
    };
    let set: Vec<&str> = every.variables().into_iter().map(|(n, _)| n).collect();
    assert_eq!(declared, set);
    // Defence in depth: a line of the build log that slipped through as `##vso[task.setvariable`
    // could set no other variable. The agent matches these names (Minimatch, ignoring case)
    // against every task.setvariable, output variables included (TaskRestrictionsExtension /
    // TaskSetVariableCommand in azure-pipelines-agent). The command mode stays unrestricted:
    // restricted mode refuses task.uploadsummary and task.uploadfile, which the task uses.
    let allowed: Vec<&str> = task["restrictions"]["settableVariables"]["allowed"]
        .as_array()
        .expect("restrictions.settableVariables.allowed")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, set);
    assert!(task["restrictions"].get("commands").is_none());
    for output in task["outputVariables"].as_array().unwrap() {
        assert!(
            !output["description"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{output} has a description"
        );
    }
}

#[test]
fn the_task_runs_the_launcher_on_node_20_and_24() {
    let task = task_json();
    assert_eq!(task["name"], "AzureImageBuilderTask");
    assert_eq!(task["version"]["Major"], 1);
    assert_eq!(task["category"], "Deploy");
    assert_eq!(task["visibility"], serde_json::json!(["Build", "Release"]));
    assert_eq!(task["inputs"][0]["type"], "connectedService:AzureRM");
    assert!(!task["instanceNameFormat"].as_str().unwrap().is_empty());
    let execution = task["execution"].as_object().unwrap();
    assert_eq!(
        execution.keys().collect::<Vec<_>>(),
        ["Node20_1", "Node24"],
        "only the Node handlers: Linux and macOS agents have no other"
    );
    for handler in execution.values() {
        assert_eq!(handler["target"], "run.js");
    }
    assert!(Path::new(&root().join("run.js")).is_file());
    // azure-pipelines-tasks docs/migrateNode20.md: "Agent version `3.232.1` is the first version
    // that supports `Node20_1` handler"; docs/migrateNode24.md: with both listed, an agent
    // without Node24 uses Node20_1, and one from 4.265.1 picks Node24. minimumAgentVersion
    // upgrades older agents, so it is exactly the lowest agent that runs Node20_1: 3.x agents
    // (still in use on older self-hosted pools) keep working.
    assert_eq!(task["minimumAgentVersion"], "3.232.1");
}
