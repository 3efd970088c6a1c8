//! The task's output variables: `imageUri` (the image's resource id, or the VHD's URI),
//! `pirPublisher`/`pirOffer`/`pirSku`/`pirVersion` for marketplace sources, plus `templateName`
//! and `templateId`; set as output variables and shown in the original task's banner, which
//! users search their logs for.

use anyhow::{Result, anyhow};

use crate::agent::Console;
use crate::agent::host::Host;
use crate::arm::{ArmClient, ArmError};
use crate::image_template::{self, RunOutput};
use crate::plan::Distribution;

/// The image a finished run distributed, as `imageUri` names it: the resource id, or the VHD's
/// URL (the user's own `vhdUri` as given). `None` when the run has no output of that name.
pub async fn distributed_image(
    arm: &ArmClient,
    template_path: &str,
    distribution: &Distribution,
) -> Result<Option<String>> {
    let name = distribution.run_output_name();
    let output: RunOutput = match arm
        .get(
            "reading the build's output",
            &format!("{template_path}/runOutputs/{name}"),
            image_template::API_VERSION,
        )
        .await
    {
        Ok(output) => output,
        Err(e)
            if e.downcast_ref::<ArmError>()
                .is_some_and(|a| a.status == 404) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let p = output.properties;
    Ok(Some(match distribution {
        Distribution::VhdAt { uri } => uri.clone(),
        Distribution::Vhd => p
            .artifact_uri
            .as_deref()
            .map(super::vhd::output_url)
            .ok_or_else(|| anyhow!("the build's output {name} names no VHD"))?,
        _ => p
            .artifact_id
            .or(p.artifact_uri)
            .ok_or_else(|| anyhow!("the build's output {name} names no image"))?,
    }))
}

/// Values of the output variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub image_uri: String,
    /// `(publisher, offer, sku, exact version)` of a marketplace source.
    pub platform_image: Option<(String, String, String, String)>,
    pub template_name: String,
    pub template_id: String,
}

impl Outputs {
    /// `(name, value)` in the order they are set and shown.
    pub fn variables(&self) -> Vec<(&'static str, &str)> {
        let mut vars = vec![("imageUri", self.image_uri.as_str())];
        if let Some((publisher, offer, sku, version)) = &self.platform_image {
            vars.extend([
                ("pirPublisher", publisher.as_str()),
                ("pirOffer", offer.as_str()),
                ("pirSku", sku.as_str()),
                ("pirVersion", version.as_str()),
            ]);
        }
        vars.push(("templateName", self.template_name.as_str()));
        vars.push(("templateId", self.template_id.as_str()));
        vars
    }

    /// Sets each as an output variable, then prints the banner: the original task's on Azure
    /// Pipelines (users search their logs for it), `name = value` lines on GitHub (where outputs
    /// go to a file nobody sees), nothing more in a terminal (which prints each output already).
    pub fn emit(&self, console: &Console) {
        for (name, value) in self.variables() {
            console.set_variable(name, value, true);
        }
        match console.host() {
            Host::AzurePipelines => {
                console.info("## task output variables ##");
                for (name, value) in self.variables() {
                    console.info(format!("$({name}) =  {value}"));
                }
            }
            Host::GitHubActions(_) => {
                console.info("Outputs:");
                for (name, value) in self.variables() {
                    console.info(format!("  {name} = {value}"));
                }
            }
            Host::Terminal { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::command::decode;
    use crate::agent::console::Capture;

    #[test]
    fn sets_output_variables_and_prints_the_banner() {
        let out = Capture::default();
        let console = Console::with_writer(Box::new(out.clone()), false);
        Outputs {
            image_uri: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/web"
                .into(),
            platform_image: Some((
                "Canonical".into(),
                "jammy".into(),
                "22_04-lts".into(),
                "22.04.1".into(),
            )),
            template_name: "t_1".into(),
            template_id: "/subscriptions/s/.../t_1".into(),
        }
        .emit(&console);
        let text = out.text();
        let set: Vec<(String, String)> = text
            .lines()
            .filter_map(decode)
            .map(|c| (c.property("variable").unwrap().to_owned(), c.message))
            .collect();
        assert_eq!(set[0].0, "imageUri");
        assert_eq!(set[4], ("pirVersion".into(), "22.04.1".into()));
        assert_eq!(set.len(), 7);
        assert!(text.contains("\n## task output variables ##\n$(imageUri) =  /subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/web\n"));
        assert!(text.contains("isOutput=true"));

        let out = Capture::default();
        let console = Console::with_writer(Box::new(out.clone()), false);
        Outputs {
            image_uri: "https://x/y.vhd".into(),
            ..Default::default()
        }
        .emit(&console);
        assert!(!out.text().contains("pirPublisher"));
    }
}
