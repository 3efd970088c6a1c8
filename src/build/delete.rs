//! Deleting the template (and with it the staging group Image Builder made), safe to repeat: a
//! DELETE whose answer was lost is retried, and the retry may meet the first one's work. A
//! template already gone (404) or already being deleted (a 409 naming the `deleting` state, in
//! the form Image Builder uses for operations refused in a state, as users reported in
//! Azure/azvmimagebuilder issue 65: "Operation 'DELETE' is not allowed in provisioningState:
//! 'creating'") counts as accepted.

use std::time::Duration;

use anyhow::Result;
use reqwest::Method;
use tokio::time::Instant;

use crate::agent::Console;
use crate::arm::{ArmClient, ArmError};
use crate::image_template;

/// How the DELETE ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Accepted now.
    Accepted,
    /// An earlier request (whose answer was lost) is deleting it already.
    AlreadyDeleting,
    /// It was gone already.
    Gone,
}

/// Whether a refused DELETE says the template is being deleted already.
pub fn already_deleting(error: &ArmError) -> bool {
    error.status == 409 && error.message.to_ascii_lowercase().contains("deleting")
}

/// The longest the task follows a deletion it was asked to wait for.
const WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Deletes the template at `path`; with `wait`, follows the deletion to its end.
pub async fn delete(
    arm: &ArmClient,
    console: &Console,
    path: &str,
    name: &str,
    wait: bool,
) -> Result<Deletion> {
    let url = arm.url(path, image_template::API_VERSION)?;
    let operation = format!("deleting template {name}");
    let deadline = Instant::now() + WAIT_LIMIT;
    let (deletion, accepted) = match arm.send(&operation, Method::DELETE, url, None).await {
        Ok(accepted) => (Deletion::Accepted, Some(accepted)),
        Err(e) => match e.downcast_ref::<ArmError>() {
            Some(a) if a.status == 404 => return Ok(Deletion::Gone),
            Some(a) if already_deleting(a) => {
                console.info(format!(
                    "{operation}: an earlier request is deleting it already ({})",
                    a.message
                ));
                (Deletion::AlreadyDeleting, None)
            }
            _ => return Err(e),
        },
    };
    if !wait {
        return Ok(deletion);
    }
    match accepted {
        Some(accepted) if accepted.operation_url().is_some() => {
            let status = arm.wait(&operation, &accepted, Some(deadline)).await?;
            anyhow::ensure!(status.succeeded(), "{operation} ended {}", status.status);
        }
        // No operation to follow: the template is gone when a GET says 404.
        _ => loop {
            match arm
                .get::<serde_json::Value>(&operation, path, image_template::API_VERSION)
                .await
            {
                Err(e)
                    if e.downcast_ref::<ArmError>()
                        .is_some_and(|a| a.status == 404) =>
                {
                    break;
                }
                Err(e) => return Err(e),
                Ok(_) => {
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "{operation}: still there after {} minutes",
                        WAIT_LIMIT.as_secs() / 60
                    );
                    tokio::time::sleep(arm.poll.default_interval).await;
                }
            }
        },
    }
    Ok(deletion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, message: &str) -> ArmError {
        ArmError {
            operation: "deleting template t_1".into(),
            status,
            code: "OperationNotAllowed".into(),
            message: message.into(),
            details: Vec::new(),
            request_id: None,
        }
    }

    #[test]
    fn a_deletion_under_way_counts_as_accepted() {
        assert!(already_deleting(&refusal(
            409,
            "Operation 'Microsoft.VirtualMachineImages/imageTemplates/delete' is not allowed in provisioningState: 'deleting', runState: 'succeeded'"
        )));
        assert!(!already_deleting(&refusal(
            409,
            "Operation 'Microsoft.VirtualMachineImages/imageTemplates/delete' is not allowed in provisioningState: 'provisioned', runState: 'running'"
        )));
        assert!(!already_deleting(&refusal(400, "deleting is not allowed")));
    }
}
