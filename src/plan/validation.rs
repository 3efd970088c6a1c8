//! What happens after customization and when a step fails: the image's validation
//! (`validationScript`, `continueDistributeOnFailure`, `sourceValidationOnly` →
//! `validate`) and Image Builder's error handling (`onCustomizerError`, `onValidationError` →
//! `errorHandling`).

use crate::inputs::{self, InputError, TaskInputs};

/// Template reference, `errorHandling`: "If there is a customizer error and this field is set
/// to 'cleanup', the build VM and associated network resources will be cleaned up … set to
/// 'abort', the build VM will be preserved."
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    #[default]
    Cleanup,
    Abort,
}

impl OnError {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Cleanup => "cleanup",
            OnError::Abort => "abort",
        }
    }
}

const ON_ERROR: &[(&str, OnError)] = &[("cleanup", OnError::Cleanup), ("abort", OnError::Abort)];

/// `errorHandling`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorHandling {
    pub on_customizer_error: OnError,
    pub on_validation_error: OnError,
}

impl ErrorHandling {
    /// Image Builder's defaults: nothing to send.
    pub fn is_default(&self) -> bool {
        *self == ErrorHandling::default()
    }
}

/// `validate`: a script run on a VM made from the finished image (or the source itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// The script, line by line, run by the provisioner's shell.
    pub script: Vec<String>,
    /// Distribute the image even when validation fails (the run still fails).
    pub continue_distribute_on_failure: bool,
    /// Validate the source image itself: no customization, no build path.
    pub source_validation_only: bool,
}

/// What the two groups of inputs became.
pub struct Read {
    pub validation: Option<Validation>,
    pub error_handling: ErrorHandling,
}

/// Reads the inputs of this module; every problem is reported.
pub fn read(raw: &TaskInputs) -> Result<Read, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut take = |r: Result<bool, InputError>| r.map_err(|e| errors.push(e)).ok();
    let continue_distribute = take(inputs::boolean(
        "continueDistributeOnFailure",
        &raw.continue_distribute_on_failure,
        false,
    ));
    let source_only = take(inputs::boolean(
        "sourceValidationOnly",
        &raw.source_validation_only,
        false,
    ));
    let mut on_error =
        |input: &'static str, raw: &Option<String>| match inputs::choice(input, raw, ON_ERROR) {
            Ok(choice) => choice.unwrap_or_default(),
            Err(e) => {
                errors.push(e);
                OnError::Cleanup
            }
        };
    let error_handling = ErrorHandling {
        on_customizer_error: on_error("onCustomizerError", &raw.on_customizer_error),
        on_validation_error: on_error("onValidationError", &raw.on_validation_error),
    };
    let script: Vec<String> = inputs::value(&raw.validation_script)
        .map(|s| {
            s.lines()
                .map(|l| l.trim_end_matches('\r').to_owned())
                .collect()
        })
        .unwrap_or_default();
    let has_script = script.iter().any(|l| !l.trim().is_empty());
    let needs_script = "needs validationScript: the script that checks the image, e.g. `test -x /opt/app/run` (Image Builder validates nothing without one)";
    if continue_distribute == Some(true) && !has_script {
        errors.push(InputError::new("continueDistributeOnFailure", needs_script));
    }
    if source_only == Some(true) && !has_script {
        errors.push(InputError::new("sourceValidationOnly", needs_script));
    }
    if error_handling.on_validation_error == OnError::Abort && !has_script {
        errors.push(InputError::new("onValidationError", needs_script));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Read {
        validation: has_script.then(|| Validation {
            script,
            continue_distribute_on_failure: continue_distribute == Some(true),
            source_validation_only: source_only == Some(true),
        }),
        error_handling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> TaskInputs {
        let mut raw = TaskInputs::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "validationScript" => raw.validation_script = v,
                "continueDistributeOnFailure" => raw.continue_distribute_on_failure = v,
                "sourceValidationOnly" => raw.source_validation_only = v,
                "onCustomizerError" => raw.on_customizer_error = v,
                "onValidationError" => raw.on_validation_error = v,
                other => panic!("{other}"),
            }
        }
        raw
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        match read(&inputs(pairs)) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn nothing_set_is_image_builders_default() {
        let read = read(&TaskInputs::default()).unwrap();
        assert_eq!(read.validation, None);
        assert!(read.error_handling.is_default());
    }

    #[test]
    fn a_validation_script_with_its_options() {
        let read = read(&inputs(&[
            (
                "validationScript",
                "test -x /opt/app/run\r\ncurl -fsS localhost:8080\n",
            ),
            ("continueDistributeOnFailure", "True"),
            ("onCustomizerError", "Abort"),
            ("onValidationError", "abort"),
        ]))
        .unwrap();
        let v = read.validation.unwrap();
        assert_eq!(
            v.script,
            ["test -x /opt/app/run", "curl -fsS localhost:8080"]
        );
        assert!(v.continue_distribute_on_failure);
        assert!(!v.source_validation_only);
        assert_eq!(read.error_handling.on_customizer_error, OnError::Abort);
        assert_eq!(read.error_handling.on_validation_error, OnError::Abort);
    }

    #[test]
    fn bad_values_name_their_input_and_the_choices() {
        let e = errors(&[("onCustomizerError", "keep")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("'onCustomizerError'") && e[0].contains("cleanup, abort"));
        let e = errors(&[
            ("onValidationError", "stop"),
            ("sourceValidationOnly", "yes"),
        ]);
        assert!(e.iter().any(|e| e.contains("'onValidationError'")), "{e:?}");
        assert!(
            e.iter()
                .any(|e| e.contains("'sourceValidationOnly'") && e.contains("true or false"))
        );
    }

    #[test]
    fn validation_options_without_a_script_are_refused() {
        for input in ["continueDistributeOnFailure", "sourceValidationOnly"] {
            let e = errors(&[(input, "true"), ("validationScript", "  \n ")]);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].contains(input) && e[0].contains("needs validationScript"));
        }
        let e = errors(&[("onValidationError", "abort")]);
        assert!(e[0].contains("'onValidationError'") && e[0].contains("needs validationScript"));
        assert!(errors(&[("onCustomizerError", "abort")]).is_empty());
    }
}
