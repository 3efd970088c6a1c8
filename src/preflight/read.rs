//! How preflight reads Azure: one GET, its answer sorted into found, missing (404), denied
//! (403, with the permission ARM names) or failed; and the facts several checks share (the
//! source image's), read once.

use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use super::Finding;
use super::source::SourceFacts;
use crate::arm::{ArmClient, ArmError};
use crate::plan::BuildPlan;

/// What one read found.
#[derive(Debug)]
pub enum Read<T> {
    Found(T),
    /// 404: it does not exist.
    Missing,
    /// 403: the identity may not read it; `action` is the permission ARM names, if it does.
    Denied {
        action: Option<String>,
    },
    /// Anything else, described.
    Failed(String),
}

/// The permission in ARM's 403 message: "…does not have authorization to perform action
/// 'Microsoft.Authorization/roleAssignments/read' over scope …".
pub fn denied_action(message: &str) -> Option<String> {
    let rest = &message[message.find("perform action '")? + "perform action '".len()..];
    Some(rest[..rest.find('\'')?].to_owned())
}

/// Reads for the checks of one plan.
pub struct Reader<'a> {
    pub arm: &'a ArmClient,
    pub plan: &'a BuildPlan,
    source: OnceCell<Option<SourceFacts>>,
}

impl<'a> Reader<'a> {
    pub fn new(arm: &'a ArmClient, plan: &'a BuildPlan) -> Reader<'a> {
        Reader {
            arm,
            plan,
            source: OnceCell::new(),
        }
    }

    /// `GET path?api-version=…`.
    pub async fn get<T: DeserializeOwned>(&self, what: &str, path: &str, api: &str) -> Read<T> {
        match self.arm.get::<T>(what, path, api).await {
            Ok(v) => Read::Found(v),
            Err(e) => match e.downcast_ref::<ArmError>() {
                Some(a) if a.status == 404 => Read::Missing,
                Some(a) if a.status == 403 => Read::Denied {
                    action: denied_action(&a.message),
                },
                _ => Read::Failed(format!("{e:#}")),
            },
        }
    }

    /// Every item of a paged list (`value`, following `nextLink`).
    pub async fn list<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        api: &str,
    ) -> Read<Vec<T>> {
        match self.arm.list::<T>(what, path, api).await {
            Ok(v) => Read::Found(v),
            Err(e) => match e.downcast_ref::<ArmError>() {
                Some(a) if a.status == 404 => Read::Missing,
                Some(a) if a.status == 403 => Read::Denied {
                    action: denied_action(&a.message),
                },
                _ => Read::Failed(format!("{e:#}")),
            },
        }
    }

    /// The source image's facts, read once whichever check asks first.
    pub async fn source(&self) -> Option<&SourceFacts> {
        self.source
            .get_or_init(|| super::source::facts(self))
            .await
            .as_ref()
    }

    pub fn subscription(&self) -> &str {
        &self.plan.subscription_id
    }
}

/// The warning for a read the identity may not make: which permission would let preflight check.
pub fn denied(check: &'static str, what: &str, action: &Option<String>) -> Finding {
    Finding::warning(
        check,
        format!(
            "could not check {what}: the pipeline's identity may not read it{}; the build goes on unchecked",
            action
                .as_deref()
                .map(|a| format!(" (it needs {a})"))
                .unwrap_or_default()
        ),
    )
}

/// The warning for a read that failed otherwise.
pub fn failed(check: &'static str, what: &str, why: &str) -> Finding {
    Finding::warning(check, format!("could not check {what}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_is_read_from_arms_message() {
        assert_eq!(
            denied_action("The client 'x' with object id 'x' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/read' over scope '/subscriptions/s' or the scope is invalid.").as_deref(),
            Some("Microsoft.Authorization/roleAssignments/read")
        );
        assert_eq!(denied_action("Forbidden"), None);
    }
}
