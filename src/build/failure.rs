//! What a failed run means beyond Image Builder's message: the phase it failed in (a failed
//! validation is reported as such), and whether Image Builder kept a VM for debugging
//! (`errorHandling` `abort`), which the task must not delete with the template. Pure.

use std::time::Duration;

use crate::image_template::RunSubState;
use crate::plan::{BuildPlan, OnError};

/// The phase a finished run failed in: the run's own `runSubState` when Image Builder leaves
/// it, else the last sub-state the task saw while following the run (`phases`, oldest first).
pub fn failed_phase(
    final_sub_state: Option<RunSubState>,
    phases: &[(String, Duration)],
) -> Option<RunSubState> {
    final_sub_state
        .filter(|s| *s != RunSubState::Unknown)
        .or_else(|| {
            phases.iter().rev().find_map(|(name, _)| {
                serde_json::from_value::<RunSubState>(serde_json::Value::String(name.clone()))
                    .ok()
                    .filter(|s| *s != RunSubState::Unknown)
            })
        })
}

/// Whether the run was seen in `phase` (`phases` as in [`failed_phase`]).
pub fn passed_through(phases: &[(String, Duration)], phase: RunSubState) -> bool {
    let name = format!("{phase:?}");
    phases.iter().any(|(n, _)| *n == name)
}

/// A VM Image Builder keeps after a failure because of `abort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptVm {
    /// "build VM" or "validation VM".
    pub what: &'static str,
    /// The input that asked for it.
    pub input: &'static str,
    /// The phase is known: the VM was kept for sure (else it may have been).
    pub certain: bool,
}

/// Whether a run that failed in `phase` left a VM behind. Template reference, `errorHandling`:
/// with `abort` "the build VM will be preserved" and "you are responsible for cleaning up these
/// resources"; they live in the staging resource group, which deleting the template clears.
pub fn kept_vm(plan: &BuildPlan, phase: Option<RunSubState>) -> Option<KeptVm> {
    let handling = plan.error_handling;
    let customizer = KeptVm {
        what: "build VM",
        input: "onCustomizerError",
        certain: true,
    };
    let validation = KeptVm {
        what: "validation VM",
        input: "onValidationError",
        certain: true,
    };
    match phase {
        Some(RunSubState::Customizing) if handling.on_customizer_error == OnError::Abort => {
            Some(customizer)
        }
        Some(RunSubState::Validating) if handling.on_validation_error == OnError::Abort => {
            Some(validation)
        }
        Some(_) => None,
        // Unknown phase: keep whatever may be there rather than delete a VM kept on purpose.
        None if handling.on_customizer_error == OnError::Abort => Some(KeptVm {
            certain: false,
            ..customizer
        }),
        None if handling.on_validation_error == OnError::Abort => Some(KeptVm {
            certain: false,
            ..validation
        }),
        None => None,
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
    fn the_failed_phase_comes_from_the_run_or_from_what_was_seen() {
        assert_eq!(
            failed_phase(Some(RunSubState::Validating), &[]),
            Some(RunSubState::Validating)
        );
        let seen = phases(&[
            "Staging the build path",
            "Queued",
            "Customizing",
            "Validating",
            "Failed",
        ]);
        assert_eq!(failed_phase(None, &seen), Some(RunSubState::Validating));
        assert_eq!(
            failed_phase(Some(RunSubState::Unknown), &seen),
            Some(RunSubState::Validating)
        );
        assert_eq!(failed_phase(None, &phases(&["Failed"])), None);
        assert!(passed_through(&seen, RunSubState::Validating));
        assert!(!passed_through(&seen, RunSubState::Distributing));
    }

    fn plan_with(handling: ErrorHandling) -> BuildPlan {
        let mut plan = crate::plan::tests::sample_plan();
        plan.error_handling = handling;
        plan
    }

    #[test]
    fn abort_keeps_the_vm_of_the_phase_that_failed() {
        let both = plan_with(ErrorHandling {
            on_customizer_error: OnError::Abort,
            on_validation_error: OnError::Abort,
        });
        assert_eq!(
            kept_vm(&both, Some(RunSubState::Customizing)).unwrap().what,
            "build VM"
        );
        assert_eq!(
            kept_vm(&both, Some(RunSubState::Validating)).unwrap().input,
            "onValidationError"
        );
        assert_eq!(kept_vm(&both, Some(RunSubState::Distributing)), None);
        assert!(!kept_vm(&both, None).unwrap().certain);
        let customizer_only = plan_with(ErrorHandling {
            on_customizer_error: OnError::Abort,
            on_validation_error: OnError::Cleanup,
        });
        assert_eq!(
            kept_vm(&customizer_only, Some(RunSubState::Validating)),
            None
        );
        assert_eq!(kept_vm(&plan_with(ErrorHandling::default()), None), None);
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
