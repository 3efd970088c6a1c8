//! What a failed run means beyond Image Builder's message: the phase it failed in (a failed
//! validation is reported as such), and whether Image Builder kept a VM for debugging
//! (`errorHandling` `abort`), which the task must not delete with the template. Pure.

use std::time::Duration;

use crate::image_template::{RunState, RunSubState};
use crate::plan::{BuildPlan, OnError};

/// The phase a run failed in, and whether Azure said so or the task only saw the run there
/// last (a poll may miss a short phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    pub sub_state: Option<RunSubState>,
    pub certain: bool,
}

/// The phase a finished run failed in: the run's own `runSubState` when Image Builder leaves it;
/// else a log named `validation.log` (the troubleshooting guide: "the customization and
/// validation logs … `customization.log` and/or `validation.log`"); else, uncertain, the last
/// sub-state the task saw while following the run (`phases`, oldest first).
pub fn failed_phase(
    final_sub_state: Option<RunSubState>,
    log_url: Option<&str>,
    phases: &[(String, Duration)],
) -> Phase {
    if let Some(s) = final_sub_state.filter(|s| *s != RunSubState::Unknown) {
        return Phase {
            sub_state: Some(s),
            certain: true,
        };
    }
    if log_url.is_some_and(|u| {
        u.split('?')
            .next()
            .unwrap_or(u)
            .ends_with("/validation.log")
    }) {
        return Phase {
            sub_state: Some(RunSubState::Validating),
            certain: true,
        };
    }
    Phase {
        sub_state: phases.iter().rev().find_map(|(name, _)| {
            serde_json::from_value::<RunSubState>(serde_json::Value::String(name.clone()))
                .ok()
                .filter(|s| *s != RunSubState::Unknown)
        }),
        certain: false,
    }
}

/// Whether the run was seen in `phase` (`phases` as in [`failed_phase`]).
pub fn passed_through(phases: &[(String, Duration)], phase: RunSubState) -> bool {
    let name = format!("{phase:?}");
    phases.iter().any(|(n, _)| *n == name)
}

/// A VM Image Builder keeps after a failure because of `abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptVm {
    /// What was kept: "build VM" (the API's word for both cases).
    pub what: &'static str,
    /// The input that asked for it.
    pub input: &'static str,
    /// The phase is known: the VM was kept for sure (else it may have been).
    pub certain: bool,
}

/// Whether a run that failed in `phase` left a VM behind. Template reference, `errorHandling`:
/// with `abort` "the build VM will be preserved" and "you are responsible for cleaning up these
/// resources"; they live in the staging resource group, which deleting the template clears. Only
/// failures count (a cancelled run is not a customizer or validation error); a phase the task
/// only guessed keeps whatever may be there rather than delete a VM kept on purpose.
pub fn kept_vm(plan: &BuildPlan, state: RunState, phase: Phase) -> Option<KeptVm> {
    if state != RunState::Failed {
        return None;
    }
    let handling = plan.error_handling;
    let customizer = KeptVm {
        what: "build VM",
        input: "onCustomizerError",
        certain: true,
    };
    let validation = KeptVm {
        input: "onValidationError",
        ..customizer
    };
    let by_phase = match phase.sub_state {
        Some(RunSubState::Customizing) if handling.on_customizer_error == OnError::Abort => {
            Some(customizer)
        }
        Some(RunSubState::Validating) if handling.on_validation_error == OnError::Abort => {
            Some(validation)
        }
        _ => None,
    };
    match (by_phase, phase.certain) {
        (Some(vm), true) => Some(vm),
        (None, true) if phase.sub_state.is_some() => None,
        // Unknown or guessed: any abort may have kept a VM.
        (guess, _) => guess
            .or((handling.on_customizer_error == OnError::Abort).then_some(customizer))
            .or((handling.on_validation_error == OnError::Abort).then_some(validation))
            .map(|vm| KeptVm {
                certain: false,
                ..vm
            }),
    }
}

/// What the user reads about a kept VM: where it is, how to look at it, how to remove it.
pub fn kept_vm_note(
    kept: &KeptVm,
    staging: &str,
    removal_hint: &str,
    group: Option<&str>,
) -> String {
    let list = match group.and_then(|g| g.rsplit('/').next()) {
        Some(name) => format!(" (az vm list --resource-group {name} --output table)"),
        None => String::new(),
    };
    format!(
        "The {what} {was} kept for debugging ({input}: abort) in the {staging}{list}: inspect it in the Azure portal (boot diagnostics, serial console, Run command) while the template exists. It costs money until removed, and Image Builder does not remove it on its own: the task kept the template, whose deletion removes the {what} and the other build resources with it: {removal_hint}",
        what = kept.what,
        was = if kept.certain { "was" } else { "may have been" },
        input = kept.input,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ErrorHandling;

    fn phases(names: &[&str]) -> Vec<(String, Duration)> {
        names
            .iter()
            .map(|n| (n.to_string(), Duration::from_secs(1)))
            .collect()
    }

    #[test]
    fn the_failed_phase_comes_from_the_run_the_log_or_what_was_seen() {
        let certain = |s| Phase {
            sub_state: Some(s),
            certain: true,
        };
        assert_eq!(
            failed_phase(Some(RunSubState::Validating), None, &[]),
            certain(RunSubState::Validating)
        );
        assert_eq!(
            failed_phase(
                None,
                Some("https://a.blob.core.windows.net/packerlogs/g/validation.log"),
                &[]
            ),
            certain(RunSubState::Validating)
        );
        let seen = phases(&[
            "Staging the build path",
            "Queued",
            "Customizing",
            "Validating",
            "Failed",
        ]);
        let guessed = failed_phase(
            Some(RunSubState::Unknown),
            Some("https://a/packerlogs/g/customization.log"),
            &seen,
        );
        assert_eq!(guessed.sub_state, Some(RunSubState::Validating));
        assert!(!guessed.certain);
        assert_eq!(
            failed_phase(None, None, &phases(&["Failed"])).sub_state,
            None
        );
        assert!(passed_through(&seen, RunSubState::Validating));
        assert!(!passed_through(&seen, RunSubState::Distributing));
    }

    fn plan_with(handling: ErrorHandling) -> BuildPlan {
        let mut plan = crate::plan::tests::sample_plan();
        plan.error_handling = handling;
        plan
    }

    #[test]
    fn abort_keeps_the_vm_of_a_failure_never_of_a_cancellation() {
        let sure = |s| Phase {
            sub_state: Some(s),
            certain: true,
        };
        let guess = |s| Phase {
            sub_state: Some(s),
            certain: false,
        };
        let both = plan_with(ErrorHandling {
            on_customizer_error: OnError::Abort,
            on_validation_error: OnError::Abort,
        });
        let failed = RunState::Failed;
        assert_eq!(
            kept_vm(&both, failed, sure(RunSubState::Customizing))
                .unwrap()
                .input,
            "onCustomizerError"
        );
        assert_eq!(
            kept_vm(&both, failed, sure(RunSubState::Validating))
                .unwrap()
                .input,
            "onValidationError"
        );
        assert_eq!(
            kept_vm(&both, failed, sure(RunSubState::Distributing)),
            None
        );
        assert_eq!(
            kept_vm(&both, RunState::Canceled, sure(RunSubState::Customizing)),
            None
        );
        let unknown = Phase {
            sub_state: None,
            certain: false,
        };
        assert!(!kept_vm(&both, failed, unknown).unwrap().certain);

        // A validation abort is never lost to a wrong guess of the phase.
        let validation_only = plan_with(ErrorHandling {
            on_customizer_error: OnError::Cleanup,
            on_validation_error: OnError::Abort,
        });
        let kept = kept_vm(&validation_only, failed, guess(RunSubState::Customizing)).unwrap();
        assert_eq!(kept.input, "onValidationError");
        assert!(!kept.certain);
        assert_eq!(
            kept_vm(&validation_only, failed, sure(RunSubState::Customizing)),
            None
        );
        assert_eq!(
            kept_vm(&plan_with(ErrorHandling::default()), failed, unknown),
            None
        );
    }

    #[test]
    fn the_note_says_where_and_how_to_remove() {
        let note = kept_vm_note(
            &KeptVm {
                what: "build VM",
                input: "onCustomizerError",
                certain: true,
            },
            "staging resource group /subscriptions/s/resourceGroups/IT_rg_t_1",
            "az image builder delete --name t --resource-group rg --subscription s",
            Some("/subscriptions/s/resourceGroups/IT_rg_t_1"),
        );
        assert!(note.contains("The build VM was kept"));
        assert!(note.contains("az vm list --resource-group IT_rg_t_1"));
        assert!(
            note.ends_with("az image builder delete --name t --resource-group rg --subscription s")
        );
    }
}
