//! Starting the build (`POST …/run`) exactly once. A POST whose answer was lost or was 5xx may
//! still have started it, so before posting again the task reads the template's
//! `lastRunStatus`; a refusal because a run is in progress means an earlier POST started it,
//! and the task follows that run. Image Builder names the run state in such refusals
//! ("…is not allowed in provisioningState: 'provisioned', runState: 'running'", as users
//! reported for delete in danielsollondon/azvmimagebuilder issues 38, 79 and 116), with a code
//! that has varied, so the message and the template's state decide, not the code.

use anyhow::Result;
use reqwest::Method;

use crate::agent::Console;
use crate::arm::{ArmClient, ArmError, AttemptError};
use crate::image_template::{self, ImageTemplate, RunState};

/// Whether a refusal says a run is already going on.
pub fn says_running(error: &ArmError) -> bool {
    let text = format!("{} {}", error.code, error.message).to_ascii_lowercase();
    (text.contains("runstate") || text.contains("run state") || text.contains("in progress"))
        && (text.contains("running") || text.contains("in progress"))
}

/// Whether the template shows a run: this run's template is new, so any run is ours.
fn has_run(template: &ImageTemplate) -> bool {
    template
        .properties
        .last_run_status
        .as_ref()
        .is_some_and(|s| {
            s.run_state.is_some() && s.run_state != Some(RunState::Unknown)
                || s.start_time.is_some()
        })
}

async fn run_started(arm: &ArmClient, path: &str) -> Result<bool> {
    let current: ImageTemplate = arm
        .get(
            "reading the build's state",
            path,
            image_template::API_VERSION,
        )
        .await?;
    Ok(has_run(&current))
}

/// Posts `…/run` until a run exists, never starting a second one.
pub async fn start(arm: &ArmClient, console: &Console, path: &str) -> Result<()> {
    let operation = "starting the build";
    let url = arm.url(&format!("{path}/run"), image_template::API_VERSION)?;
    let mut attempt = 1;
    loop {
        let failure = match arm.attempt(operation, Method::POST, &url, None).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Some(refused) = failure.arm_error()
            && refused.status == 409
            && (says_running(refused) || run_started(arm, path).await.unwrap_or(false))
        {
            console.info(format!(
                "{operation}: Image Builder says a run is already in progress ({}): an earlier request started it; following that run",
                refused.message
            ));
            return Ok(());
        }
        let AttemptError::Transient {
            reason,
            retry_after,
            error,
        } = failure
        else {
            return Err(failure.into_error());
        };
        // The lost or failed answer may hide a run that started: look before posting again.
        match run_started(arm, path).await {
            Ok(true) => {
                console.info(format!(
                    "{operation}: the answer was lost ({reason}) but the build had started; following it"
                ));
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => console.info(format!(
                "{operation}: could not read the build's state ({e:#})"
            )),
        }
        if !arm
            .pause_before_retry(operation, attempt, &reason, retry_after)
            .await
        {
            return Err(error);
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: &str, message: &str) -> ArmError {
        ArmError {
            operation: "starting the build".into(),
            status: 409,
            code: code.into(),
            message: message.into(),
            details: Vec::new(),
            request_id: None,
        }
    }

    #[test]
    fn refusals_that_name_a_running_run() {
        for (code, message) in [
            (
                "OperationNotAllowed",
                "Operation 'Microsoft.VirtualMachineImages/imageTemplates/run' is not allowed in provisioningState: 'provisioned', runState: 'running'",
            ),
            (
                "Conflict",
                "Operation is not allowed in provisioning state: provisioned or run state: running.",
            ),
            (
                "Conflict",
                "Image template 't_1' already has a build in progress (runState 'Running').",
            ),
        ] {
            assert!(says_running(&refusal(code, message)), "{message}");
        }
        for (code, message) in [
            (
                "Conflict",
                "Cannot run image template 't_1' while its provisioningState is 'Creating'.",
            ),
            (
                "OperationNotAllowed",
                "Operation is not allowed in provisioning state: provisioned or run state: canceling.",
            ),
        ] {
            assert!(!says_running(&refusal(code, message)), "{message}");
        }
    }

    #[test]
    fn a_run_shows_in_last_run_status() {
        let mut t: ImageTemplate = serde_json::from_value(serde_json::json!({
            "location": "westus2",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/x": {}}},
            "properties": {"source": {"type": "PlatformImage", "publisher": "p", "offer": "o", "sku": "s", "version": "latest"}, "customize": [], "distribute": []}
        }))
        .unwrap();
        assert!(!has_run(&t));
        t.properties.last_run_status = Some(Default::default());
        assert!(!has_run(&t));
        t.properties.last_run_status = Some(image_template::LastRunStatus {
            run_state: Some(RunState::Running),
            ..Default::default()
        });
        assert!(has_run(&t));
    }
}
