//! The `customizersFile` checks against the real 2024-02-01 swagger (`../shared/specs`, or
//! `AIB_SPECS_DIR`; skipped with a message when absent, a failure when `CI` is set):
//!
//! * the module's table of types and fields is the swagger's, and every field the swagger
//!   requires is refused when missing;
//! * files accepted by `load` (every customizer type, both systems) serialize, through the
//!   template's own `Customizer` model, into a template body the emulator's swagger validator
//!   accepts, and so do the raw items of those files;
//! * typical bad files are refused with the expected JSON paths, and where the mistake is one
//!   the schema itself can see, the swagger validator refuses the raw items too.

use std::collections::BTreeSet;
use std::path::Path;

use aib_emulator::swagger::SwaggerSpec;
use aib_task::customizers_file::{self, CustomizersFileError};
use aib_task::image_template::{self, ImageTemplate};
use aib_task::plan::Os;
use serde_json::{Value, json};

const TEMPLATE_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}";
const SAS: &str = "https://acct.blob.core.windows.net/scripts/setup.sh?sv=2022-11-02&sr=b&sp=r&sig=VGhpc0lzU2VjcmV0%3D";
const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The spec's path and its compiled validator, or `None` (after saying so) when absent.
fn spec() -> Option<(std::path::PathBuf, SwaggerSpec)> {
    match SwaggerSpec::default_image_builder_path(image_template::API_VERSION) {
        Some(path) => {
            let spec = SwaggerSpec::load(&path).expect("the swagger loads");
            Some((path, spec))
        }
        None => {
            aib_emulator::swagger::missing_spec(&format!(
                "the Image Builder {} swagger",
                image_template::API_VERSION
            ));
            None
        }
    }
}

/// A minimal valid template body holding `customize`.
fn template_body(customize: Value) -> Value {
    json!({
        "location": "westeurope",
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib": {}
            }
        },
        "properties": {
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
            "customize": customize,
            "distribute": [{"type": "VHD", "runOutputName": "VHD_distribute"}],
            "buildTimeoutInMinutes": 60
        }
    })
}

fn load_text(
    dir: &Path,
    text: &str,
    os: Os,
) -> Result<Vec<image_template::Customizer>, CustomizersFileError> {
    let path = dir.join("customizers.json");
    std::fs::write(&path, text).unwrap();
    customizers_file::load(&path, os)
}

/// The customizer subtypes of the swagger: discriminator value → (all properties, required).
fn swagger_customizers(path: &Path) -> Vec<(String, BTreeSet<String>, BTreeSet<String>)> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let definitions = doc["definitions"].as_object().unwrap();
    let base = &definitions["ImageTemplateCustomizer"];
    let names = |schema: &Value, key: &str| -> BTreeSet<String> {
        match &schema[key] {
            Value::Object(props) => props.keys().cloned().collect(),
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut found = Vec::new();
    for schema in definitions.values() {
        let parents = schema["allOf"].as_array().cloned().unwrap_or_default();
        if !parents
            .iter()
            .any(|p| p["$ref"] == "#/definitions/ImageTemplateCustomizer")
        {
            continue;
        }
        let value = schema["x-ms-discriminator-value"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut fields = names(base, "properties");
        fields.extend(names(schema, "properties"));
        let mut required = names(base, "required");
        required.extend(names(schema, "required"));
        found.push((value, fields, required));
    }
    found
}

#[test]
fn the_field_table_is_the_swaggers() {
    let Some((path, _)) = spec() else { return };
    let subtypes = swagger_customizers(&path);
    let swagger_types: BTreeSet<&str> = subtypes.iter().map(|(t, _, _)| t.as_str()).collect();
    let ours: BTreeSet<&str> = customizers_file::types().into_iter().collect();
    assert_eq!(ours, swagger_types);
    for (type_name, fields, required) in &subtypes {
        let ours: BTreeSet<String> = customizers_file::allowed_fields(type_name)
            .unwrap()
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        assert_eq!(&ours, fields, "{type_name}");
        // Each field the swagger requires is refused when missing, at its own path.
        for field in required {
            let mut item = json!({"type": type_name});
            item.as_object_mut().unwrap().remove(field);
            let os = if type_name == "Shell" {
                Os::Linux
            } else {
                Os::Windows
            };
            let e = customizers_file::parse(&json!([item]).to_string(), os).unwrap_err();
            assert!(
                e.problems.iter().any(|p| p.path == format!("$[0].{field}")),
                "{type_name}.{field}: {e}"
            );
        }
    }
}

#[test]
fn accepted_files_make_templates_the_swagger_accepts() {
    let Some((_, spec)) = spec() else { return };
    let dir = tempfile::tempdir().unwrap();
    let linux = json!([
        {"type": "Shell", "name": "packages", "inline": ["sudo apt-get update", "sudo apt-get install -y jq"]},
        {"type": "Shell", "scriptUri": SAS, "sha256Checksum": SHA},
        {"type": "File", "name": "config", "sourceUri": SAS, "destination": "/tmp/app.conf", "sha256Checksum": SHA},
        {"type": "File", "sourceUri": "http://example.com/motd", "destination": "/tmp/motd", "sha256Checksum": ""}
    ]);
    let windows = json!([
        {"type": "PowerShell", "name": "setup", "inline": ["Write-Host setup"], "runElevated": true, "runAsSystem": true, "validExitCodes": [0, 3010]},
        {"type": "PowerShell", "scriptUri": SAS, "sha256Checksum": SHA, "runElevated": true},
        {"type": "PowerShell", "inline": ["Write-Host plain"]},
        {"type": "File", "sourceUri": SAS, "destination": "C:\\buildArtifacts\\app.conf"},
        {"type": "WindowsRestart", "name": "reboot", "restartCommand": "shutdown /r /f /t 0", "restartCheckCommand": "powershell -command \"& {Write-Output 'restarted.'}\"", "restartTimeout": "10m"},
        {"type": "WindowsRestart"},
        {"type": "WindowsUpdate", "searchCriteria": "IsInstalled=0", "filters": ["exclude:$_.Title -like '*Preview*'", "include:$true"], "updateLimit": 40},
        {"type": "WindowsUpdate"}
    ]);
    let mut types_seen = BTreeSet::new();
    for (os, file) in [(Os::Linux, &linux), (Os::Windows, &windows)] {
        let text = serde_json::to_string_pretty(file).unwrap();
        let customizers =
            load_text(dir.path(), &text, os).unwrap_or_else(|e| panic!("{os:?}: {e}"));
        assert_eq!(customizers.len(), file.as_array().unwrap().len());

        // Through the model, as the task will send them.
        let mut template: ImageTemplate = serde_json::from_value(template_body(json!([]))).unwrap();
        template.properties.customize = customizers;
        let body = serde_json::to_value(&template).unwrap();
        for item in body["properties"]["customize"].as_array().unwrap() {
            types_seen.insert(item["type"].as_str().unwrap().to_owned());
        }
        if let Err(issues) = spec.validate_request_body("PUT", TEMPLATE_PATH, &body) {
            panic!("{os:?}: {issues:#?}");
        }
        // Each one alone, against the customizer definition.
        for item in body["properties"]["customize"].as_array().unwrap() {
            assert!(
                spec.validate_definition("ImageTemplateCustomizer", item)
                    .is_ok(),
                "{item}"
            );
        }
        // The file's items as written are a valid body too: the checks refuse nothing the
        // schema allows in these files, and the model loses nothing Image Builder needs.
        assert!(
            spec.validate_request_body("PUT", TEMPLATE_PATH, &template_body(file.clone()))
                .is_ok()
        );
        // The SAS survives into the body, and the template as logged masks it.
        let shown = image_template::to_display_json(&template);
        assert!(!shown.contains("VGhpc0lzU2VjcmV0"), "{shown}");
    }
    assert_eq!(
        types_seen,
        customizers_file::types()
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
    );
}

struct Bad {
    os: Os,
    items: Value,
    paths: &'static [&'static str],
    /// The mistake is one of schema (a type, an unknown field): the swagger refuses it too.
    schema_level: bool,
}

#[test]
fn typical_bad_files_are_refused_at_their_paths() {
    let spec = spec();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        Bad {
            os: Os::Linux,
            items: json!([{"type": "Shell", "scriptURI": SAS}]),
            paths: &["$[0].scriptURI", "$[0]"],
            schema_level: true,
        },
        Bad {
            os: Os::Linux,
            items: json!([
                {"type": "Shell", "inline": ["ok"]},
                {"type": "Shell", "inline": ["ok"]},
                {"type": "Shell", "inline": ["echo", 42]}
            ]),
            paths: &["$[2].inline[1]"],
            schema_level: true,
        },
        Bad {
            os: Os::Windows,
            items: json!([{"type": "PowerShell", "inline": ["x"], "runElevated": "true", "validExitCodes": ["0"]}]),
            paths: &["$[0].runElevated", "$[0].validExitCodes[0]"],
            schema_level: true,
        },
        Bad {
            os: Os::Windows,
            items: json!([{"type": "WindowsUpdate", "updateLimit": -5, "filters": "include:$true"}]),
            paths: &["$[0].filters", "$[0].updateLimit"],
            schema_level: true,
        },
        Bad {
            os: Os::Windows,
            items: json!([{"type": "Shell", "inline": ["x"]}, {"type": "windowsRestart"}]),
            paths: &["$[0].type", "$[1].type"],
            schema_level: false,
        },
        Bad {
            os: Os::Linux,
            items: json!([{"type": "Shell", "inline": ["x"], "scriptUri": SAS}, {"type": "File", "sourceUri": "ftp://h/f", "destination": "tmp/f"}]),
            paths: &["$[0]", "$[1].sourceUri", "$[1].destination"],
            schema_level: false,
        },
        Bad {
            os: Os::Windows,
            items: json!([
                {"type": "PowerShell", "name": "aib-task-inline-script", "inline": ["x"], "runAsSystem": true},
                {"type": "WindowsRestart", "name": "r", "restartTimeout": "ten minutes"},
                {"type": "WindowsRestart", "name": "r"}
            ]),
            paths: &[
                "$[0].name",
                "$[0].runAsSystem",
                "$[1].restartTimeout",
                "$[2].name",
            ],
            schema_level: false,
        },
        Bad {
            os: Os::Linux,
            items: json!([{"type": "File", "sourceUri": SAS, "destination": "/tmp/f", "sha256Checksum": "abc"}]),
            paths: &["$[0].sha256Checksum"],
            schema_level: false,
        },
    ];
    for case in &cases {
        let text = serde_json::to_string(&case.items).unwrap();
        let e = load_text(dir.path(), &text, case.os).unwrap_err();
        let got: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(got, case.paths, "{text}\n{e}");
        // No message carries the SAS signature.
        assert!(!e.to_string().contains("VGhpc0lzU2VjcmV0"), "{e}");
        for error in e.input_errors() {
            assert_eq!(error.input, "customizersFile");
        }
        if case.schema_level
            && let Some((_, spec)) = &spec
        {
            assert!(
                spec.validate_request_body(
                    "PUT",
                    TEMPLATE_PATH,
                    &template_body(case.items.clone())
                )
                .is_err(),
                "the swagger accepts {text}"
            );
        }
    }
    // Not a file of customizers at all.
    let e = load_text(dir.path(), "{\"type\": \"Shell\"}", Os::Linux).unwrap_err();
    assert_eq!(e.problems[0].path, "$");
    let e = load_text(dir.path(), "[\n  {\"type\": \"Shell\"\n", Os::Linux).unwrap_err();
    assert!(e.to_string().contains("at line 3, column 0"), "{e}");
}
