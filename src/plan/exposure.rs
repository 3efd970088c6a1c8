//! Secrets that would end up readable in the template: the inline script, the validation script
//! and the customizers file are stored in the template, which anyone with read access to its
//! resource group can read (and which the build log repeats). A secret pipeline variable whose
//! value appears there is named in a warning — its value never is.

use super::BuildPlan;

/// Values this short are too likely to appear by chance to be worth a warning.
const MIN_SECRET_CHARS: usize = 4;

/// A secret variable whose value is in a script the template carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure<'a> {
    /// The variable's name (safe to print).
    pub variable: &'a str,
    /// Its value: to be masked, never printed.
    pub value: &'a str,
    /// The inputs holding it.
    pub inputs: Vec<&'static str>,
}

impl Exposure<'_> {
    /// What the user reads: the variable and the inputs, never the value.
    pub fn warning(&self) -> String {
        format!(
            "{} holds the value of the secret variable {}: the template stores its scripts in clear text, readable by anyone who can read the template's resource group, and the build log may repeat them. Keep the secret out of the template: put it in a Key Vault and read it on the build VM with an identity from buildVmIdentities, or put it in a file in the build path (packagePath), which reaches the VM over HTTPS, is deleted from storage after the build and can be removed from the image with cleanupArtifactsOnImage",
            self.inputs.join(" and "),
            self.variable
        )
    }
}

/// Every secret whose value is in a script the template carries. `secrets` are `(variable
/// name, value)` pairs, e.g. the agent's `SECRET_<NAME>` variables.
pub fn find<'a>(
    plan: &BuildPlan,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Exposure<'a>> {
    let mut places: Vec<(&'static str, String)> =
        vec![("inlineScript", plan.customization.inline_script.join("\n"))];
    if let Some(v) = &plan.validation {
        places.push(("validationScript", v.script.join("\n")));
    }
    if !plan.extra_customizers.is_empty() {
        places.push((
            "customizersFile",
            serde_json::to_string(&plan.extra_customizers).unwrap_or_default(),
        ));
    }
    secrets
        .into_iter()
        .filter_map(|(variable, value)| {
            let value = value.trim();
            if value.chars().count() < MIN_SECRET_CHARS {
                return None;
            }
            let inputs: Vec<&'static str> = places
                .iter()
                .filter(|(_, text)| text.contains(value))
                .map(|(input, _)| *input)
                .collect();
            (!inputs.is_empty()).then_some(Exposure {
                variable,
                value,
                inputs,
            })
        })
        .collect()
}
