//! Creating the template, safely repeatable: the PUT carries a tag with a token unique to this
//! run, so when an answer is lost (dropped connection, 5xx, timeout) or a retried PUT is
//! refused with 409, a GET tells our own template (carry on) from someone else's (the name is
//! taken). Every other 409 is explained by what ARM said: an unregistered resource provider, a
//! resource lock, or its code and message as given. The explanations are pure and unit-tested.

use std::time::Duration;

use anyhow::{Result, anyhow};
use reqwest::Method;
use tokio::time::Instant;

use crate::agent::Console;
use crate::arm::{ArmClient, ArmError, AttemptError};
use crate::image_template::{self, ImageTemplate, ProvisioningState};

/// The tag whose value is [`run_token`]: how a retry recognises the template its lost first
/// attempt created. Its name holds none of the characters Azure refuses in tag names.
pub const RUN_TAG: &str = "aib-task.runToken";

/// A token no other run (not even a parallel job of the same pipeline run) has.
pub fn run_token() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The template name is taken by a template that is not this run's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NameTaken(pub String);

/// ARM refused the template for a reason other than its name (an unregistered provider, a lock,
/// or a 409 for a template that does not exist): nothing was created.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Image Builder took the template but could not provision it: the template exists.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProvisioningFailed(pub String);

/// What a 409 that is not a name clash means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `MissingSubscriptionRegistration`: the resource provider is not registered.
    Unregistered { namespace: String },
    /// `ScopeLocked`: a resource lock forbids writes; the locked scopes as ARM names them.
    Locked { scopes: Vec<String> },
    /// Anything else, shown as ARM said it.
    Other,
}

/// Reads a refusal from ARM's code, details and message. ARM's message for an unregistered
/// provider names the namespace in quotes ("…must be registered to use namespace
/// 'Microsoft.VirtualMachineImages'…", or "…is not registered to use namespace '…'"); a detail
/// may carry it as `target` ("Resolve errors for resource provider registration"). A lock
/// says "…because following scope(s) are locked: '<scope>'…".
pub fn refusal(error: &ArmError) -> Refusal {
    if error
        .code
        .eq_ignore_ascii_case("MissingSubscriptionRegistration")
    {
        let namespace = error
            .details
            .iter()
            .filter_map(|d| d.target.as_deref())
            .find(|t| t.contains('.'))
            .map(str::to_owned)
            .or_else(|| quoted_after(&error.message, "namespace"))
            .unwrap_or_else(|| "Microsoft.VirtualMachineImages".to_owned());
        return Refusal::Unregistered { namespace };
    }
    if error.code.eq_ignore_ascii_case("ScopeLocked") {
        let scopes = error
            .message
            .to_ascii_lowercase()
            .find("are locked:")
            .map(|at| quoted(&error.message[at..]))
            .unwrap_or_default();
        return Refusal::Locked { scopes };
    }
    Refusal::Other
}

/// The first `'…'` after `word`.
fn quoted_after(text: &str, word: &str) -> Option<String> {
    let at = text.to_ascii_lowercase().find(word)?;
    quoted(&text[at..]).into_iter().next()
}

/// Every `'…'` in `text`.
fn quoted(text: &str) -> Vec<String> {
    text.split('\'')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// What to tell the user about a refused template PUT that is not a name clash.
pub fn explain(
    error: &ArmError,
    template: &str,
    resource_group: &str,
    subscription: &str,
) -> String {
    let said = error.describe();
    match refusal(error) {
        Refusal::Unregistered { namespace } => format!(
            "{said}\nThe subscription {subscription} is not registered for the resource provider {namespace}, which Image Builder needs. Register it once (it takes a few minutes) with: az provider register --namespace {namespace} --subscription {subscription} --wait\nImage Builder also needs Microsoft.Compute, Microsoft.KeyVault, Microsoft.Storage, Microsoft.Network and Microsoft.ContainerInstance registered."
        ),
        Refusal::Locked { scopes } => {
            let scopes = if scopes.is_empty() {
                "(ARM did not name it)".to_owned()
            } else {
                scopes.join(", ")
            };
            format!(
                "{said}\nA resource lock on {scopes} forbids creating template {template} in resource group {resource_group}. Remove the lock or build in another resource group (ibAzureResourceGroup); list locks with: az lock list --resource-group {resource_group} --subscription {subscription}"
            )
        }
        Refusal::Other => said,
    }
}

/// Whether the template at `path` exists now, and whether it is the one this run created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    None,
    Ours,
    Theirs,
}

/// What a template's tags say about who made it.
pub fn owner(template: &ImageTemplate, token: &str) -> Existing {
    if template.tags.get(RUN_TAG).map(String::as_str) == Some(token) {
        Existing::Ours
    } else {
        Existing::Theirs
    }
}

async fn existing(arm: &ArmClient, path: &str, token: &str) -> Result<Existing> {
    let url = arm.url(path, image_template::API_VERSION)?;
    match arm
        .send("checking the template", Method::GET, url, None)
        .await
    {
        Ok(response) => Ok(owner(&response.json("checking the template")?, token)),
        Err(e)
            if e.downcast_ref::<ArmError>()
                .is_some_and(|a| a.status == 404) =>
        {
            Ok(Existing::None)
        }
        Err(e) => Err(e),
    }
}

/// Creates the template at `path` (its tags must hold [`RUN_TAG`] = `token`) and waits until it
/// is provisioned. Transient failures are retried; after one, or after a 409 that may be a name
/// clash, a GET decides. Errors: [`NameTaken`], [`Refused`] (the template does not exist),
/// [`ProvisioningFailed`] (it does), anything else (it may).
pub async fn create(
    arm: &ArmClient,
    console: &Console,
    path: &str,
    template: &ImageTemplate,
    token: &str,
    names: (&str, &str, &str),
) -> Result<()> {
    let (name, resource_group, subscription) = names;
    debug_assert_eq!(template.tags.get(RUN_TAG).map(String::as_str), Some(token));
    let operation = format!("creating template {name}");
    let body = serde_json::to_value(template)?;
    let url = arm.url(path, image_template::API_VERSION)?;
    let mut attempt = 1;
    loop {
        let failure = match arm
            .attempt(&operation, Method::PUT, &url, Some(&body))
            .await
        {
            Ok(accepted) => {
                // The operation's own status first; the template's provisioningState decides.
                let deadline = Instant::now() + PROVISIONING_LIMIT;
                let status = arm.wait(&operation, &accepted, Some(deadline)).await?;
                return provisioned(
                    arm,
                    path,
                    name,
                    status.error.map(|e| format!("{}: {}", e.code, e.message)),
                )
                .await;
            }
            Err(e) => e,
        };
        let conflict = failure.arm_error().filter(|a| a.status == 409);
        // An unregistered provider or a lock: nothing was created, and a GET would only be
        // refused the same way.
        if let Some(refused) = conflict
            && refusal(refused) != Refusal::Other
        {
            return Err(Refused(explain(refused, name, resource_group, subscription)).into());
        }
        let transient = matches!(failure, AttemptError::Transient { .. });
        if conflict.is_some() || transient {
            // An earlier attempt may have created it, answered or not.
            let found = existing(arm, path, token).await;
            if let Err(e) = &found {
                console.info(format!(
                    "could not check whether template {name} exists: {e:#}"
                ));
            }
            match found {
                Ok(Existing::Ours) => {
                    console.info(format!(
                        "template {name} exists from an earlier attempt whose answer was lost; carrying on with it"
                    ));
                    return provisioned(arm, path, name, None).await;
                }
                Ok(Existing::Theirs) => {
                    let said = failure
                        .arm_error()
                        .map(ArmError::describe)
                        .unwrap_or_else(|| format!("{:#}", failure.into_error()));
                    return Err(NameTaken(said).into());
                }
                Ok(Existing::None) if conflict.is_some() => {
                    let refused = conflict.expect("checked");
                    return Err(
                        Refused(explain(refused, name, resource_group, subscription)).into(),
                    );
                }
                // A 409 while the template cannot be read: it may be ours; say so below.
                Ok(Existing::None) | Err(_) => {}
            }
        }
        match failure {
            AttemptError::Transient {
                error,
                reason,
                retry_after,
            } => {
                if !arm
                    .pause_before_retry(&operation, attempt, &reason, retry_after)
                    .await
                {
                    return Err(error);
                }
                attempt += 1;
            }
            AttemptError::Final(error) => {
                return Err(match error.downcast::<ArmError>() {
                    Ok(a) => anyhow!("{}", a.describe()),
                    Err(e) => e,
                });
            }
        }
    }
}

/// How long a template may stay `Creating` when the task follows it without the operation URL.
const PROVISIONING_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Waits until the template's provisioningState ends; fails with Image Builder's reason.
async fn provisioned(
    arm: &ArmClient,
    path: &str,
    name: &str,
    operation_error: Option<String>,
) -> Result<()> {
    let operation = format!("creating template {name}");
    let started = Instant::now();
    loop {
        let current: ImageTemplate = arm
            .get(&operation, path, image_template::API_VERSION)
            .await?;
        match current.properties.provisioning_state {
            Some(ProvisioningState::Succeeded) => return Ok(()),
            Some(ProvisioningState::Creating | ProvisioningState::Updating) | None
                if started.elapsed() < PROVISIONING_LIMIT =>
            {
                tokio::time::sleep(arm.poll.default_interval).await;
            }
            state => {
                let reason = current
                    .properties
                    .provisioning_error
                    .and_then(|e| {
                        Some(format!(
                            "{}: {}",
                            e.provisioning_error_code.unwrap_or_default(),
                            e.message?
                        ))
                    })
                    .or(operation_error)
                    .unwrap_or_else(|| format!("provisioningState {state:?}"));
                return Err(ProvisioningFailed(format!(
                    "creating template {name} failed: {reason}"
                ))
                .into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arm::ArmErrorDetail;

    fn conflict(code: &str, message: &str, details: Vec<ArmErrorDetail>) -> ArmError {
        ArmError {
            operation: "creating template t_1".into(),
            status: 409,
            code: code.into(),
            message: message.into(),
            details,
            request_id: None,
        }
    }

    #[test]
    fn an_unregistered_provider_is_named_with_the_command_that_registers_it() {
        // The wording go-autorest's tests capture, with the namespace as a detail's target.
        let e = conflict(
            "MissingSubscriptionRegistration",
            "The subscription registration is in 'Unregistered' state. The subscription must be registered to use namespace 'Microsoft.VirtualMachineImages'. See https://aka.ms/rps-not-found for how to register subscriptions.",
            vec![ArmErrorDetail {
                code: "MissingSubscriptionRegistration".into(),
                message: "…".into(),
                target: Some("Microsoft.VirtualMachineImages".into()),
            }],
        );
        assert_eq!(
            refusal(&e),
            Refusal::Unregistered {
                namespace: "Microsoft.VirtualMachineImages".into()
            }
        );
        let text = explain(&e, "t_1", "rg", "sub-1");
        assert!(text.contains("az provider register --namespace Microsoft.VirtualMachineImages --subscription sub-1"), "{text}");
        assert!(text.contains("MissingSubscriptionRegistration"), "{text}");
        // The shorter wording, with no details: the namespace comes from the message.
        let e = conflict(
            "MissingSubscriptionRegistration",
            "The subscription is not registered to use namespace 'Microsoft.ContainerInstance'. See https://aka.ms/rps-not-found for how to register subscriptions.",
            Vec::new(),
        );
        assert_eq!(
            refusal(&e),
            Refusal::Unregistered {
                namespace: "Microsoft.ContainerInstance".into()
            }
        );
    }

    #[test]
    fn a_lock_names_its_scope() {
        let e = conflict(
            "ScopeLocked",
            "The scope '/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t_1' cannot perform write operation because following scope(s) are locked: '/subscriptions/s/resourceGroups/rg'. Please remove the lock and try again.",
            Vec::new(),
        );
        assert_eq!(
            refusal(&e),
            Refusal::Locked {
                scopes: vec!["/subscriptions/s/resourceGroups/rg".into()]
            }
        );
        let text = explain(&e, "t_1", "rg", "s");
        assert!(
            text.contains("A resource lock on /subscriptions/s/resourceGroups/rg forbids"),
            "{text}"
        );
        assert!(text.contains("az lock list --resource-group rg"), "{text}");
    }

    #[test]
    fn any_other_conflict_is_shown_as_arm_said_it() {
        let e = conflict("SomethingNew", "A reason nobody has seen yet.", Vec::new());
        assert_eq!(refusal(&e), Refusal::Other);
        assert_eq!(explain(&e, "t_1", "rg", "s"), e.describe());
        assert!(
            explain(&e, "t_1", "rg", "s")
                .contains("409 SomethingNew: A reason nobody has seen yet.")
        );
    }

    #[test]
    fn only_the_run_token_makes_a_template_ours() {
        let mut t: ImageTemplate = serde_json::from_value(serde_json::json!({
            "location": "westus2",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/x": {}}},
            "properties": {"source": {"type": "PlatformImage", "publisher": "p", "offer": "o", "sku": "s", "version": "latest"}, "customize": [], "distribute": []}
        }))
        .unwrap();
        assert_eq!(owner(&t, "token-1"), Existing::Theirs);
        t.tags.insert(RUN_TAG.into(), "token-2".into());
        assert_eq!(owner(&t, "token-1"), Existing::Theirs);
        t.tags.insert(RUN_TAG.into(), "token-1".into());
        assert_eq!(owner(&t, "token-1"), Existing::Ours);
        assert_ne!(run_token(), run_token());
    }
}
