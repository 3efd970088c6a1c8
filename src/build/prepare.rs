//! The reads a build makes before anything is written, shared by `run` and the `template`
//! command so that what `template` shows is what `run` would send: the marketplace image's
//! exact version (the outputs name it), its purchase plan (Image Builder needs it as
//! `planInfo`), and the gallery target (`super::gallery`: the image definition's region among
//! the replicas, a version number known in advance still free).

use anyhow::Result;

use super::{gallery, source};
use crate::agent::Console;
use crate::arm::ArmClient;
use crate::image_template::PurchasePlan;
use crate::plan::{BuildPlan, Source};

/// What the reads found, and the plan they settled.
pub struct Prepared {
    /// The plan with the gallery's replicas settled.
    pub plan: BuildPlan,
    /// The marketplace source's exact version.
    pub exact_version: Option<String>,
    pub purchase_plan: Option<PurchasePlan>,
}

/// Reads only: fails (before any write) when the base image or the gallery target is wrong.
pub async fn prepare(arm: &ArmClient, console: &Console, plan: &BuildPlan) -> Result<Prepared> {
    let (exact_version, purchase_plan) = match &plan.source {
        Source::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => {
            let image = (publisher.as_str(), offer.as_str(), sku.as_str());
            let exact =
                source::exact_version(arm, &plan.subscription_id, &plan.location, image, version)
                    .await?;
            console.info(format!(
                "{publisher}:{offer}:{sku}:{version} is version {exact} today"
            ));
            let purchase =
                source::purchase_plan(arm, &plan.subscription_id, &plan.location, image, &exact)
                    .await?;
            (Some(exact), purchase)
        }
        _ => (None, None),
    };
    if let Some(p) = &purchase_plan {
        console.info(format!(
            "the base image is sold with purchase plan {} (product {}, publisher {}): its terms must be accepted in the subscription (az vm image terms accept --plan {} --offer {} --publisher {})",
            p.plan_name, p.plan_product, p.plan_publisher, p.plan_name, p.plan_product, p.plan_publisher
        ));
    }
    let mut plan = plan.clone();
    gallery::check(arm, console, &mut plan, exact_version.as_deref()).await?;
    Ok(Prepared {
        plan,
        exact_version,
        purchase_plan,
    })
}
