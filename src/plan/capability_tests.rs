//! The plan of Image Builder's capabilities beyond the original task: each input read into the
//! plan, and each bad value named with the form it expects.

use super::tests::{errors, plan, rid, valid};
use super::*;

fn gallery(i: &mut TaskInputs) {
    i.distribute_type = Some("sig".into());
    i.gallery_image_id = Some(rid("Microsoft.Compute/galleries/g/images/webapp"));
}

fn problem_of<'a>(errors: &'a [(&'static str, String)], input: &str) -> &'a str {
    errors
        .iter()
        .find(|(i, _)| *i == input)
        .map(|(_, p)| p.as_str())
        .unwrap_or_else(|| panic!("no error for {input}: {errors:?}"))
}

#[test]
fn gallery_versions_and_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    gallery(&mut i);
    i.gallery_image_version = Some("1.4.0".into());
    i.replication_regions = Some("westeurope=2, northeurope".into());
    match plan(&i, dir.path()).unwrap().distribution {
        Distribution::SharedImage {
            version, regions, ..
        } => {
            assert_eq!(version, GalleryVersion::Exact("1.4.0".into()));
            assert_eq!(
                regions,
                [
                    Replica {
                        region: "westeurope".into(),
                        count: 2
                    },
                    Replica {
                        region: "northeurope".into(),
                        count: 1
                    }
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    i.gallery_image_version = Some("latest:3".into());
    assert!(matches!(
        plan(&i, dir.path()).unwrap().distribution,
        Distribution::SharedImage {
            version: GalleryVersion::Latest { major: Some(3) },
            ..
        }
    ));
}

#[test]
fn bad_gallery_versions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    gallery(&mut i);
    i.gallery_image_version = Some("1.4".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "galleryImageVersion").contains("expected X.Y.Z"));

    // A version for a managed image makes no sense.
    let mut i = valid(dir.path());
    i.gallery_image_version = Some("1.0.0".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "galleryImageVersion").contains("gallery images only"));

    // `source` needs a marketplace source with a gallery-shaped version.
    let mut i = valid(dir.path());
    gallery(&mut i);
    i.gallery_image_version = Some("source".into());
    i.image_source = Some("managedimage".into());
    i.custom_image_resource_id = Some(rid("Microsoft.Compute/images/base"));
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "galleryImageVersion").contains("a managed image has none"));
    let mut i = valid(dir.path());
    gallery(&mut i);
    i.gallery_image_version = Some("source".into());
    i.base_image_version = Some("22.04.3000000000".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "galleryImageVersion").contains("no gallery version number"));
    i.base_image_version = Some("22.04.202411010".into());
    assert!(plan(&i, dir.path()).is_ok());

    let mut i = valid(dir.path());
    gallery(&mut i);
    i.replication_regions = Some("westeurope=two".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "replicationRegions").contains("whole number from 1 to 100"));
}

#[test]
fn validation_error_handling_and_optimization() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    i.validation_script = Some("test -x /opt/webapp/run".into());
    i.continue_distribute_on_failure = Some("true".into());
    i.on_customizer_error = Some("abort".into());
    i.optimize_vm_boot = Some("true".into());
    let p = plan(&i, dir.path()).unwrap();
    let v = p.validation.as_ref().unwrap();
    assert_eq!(v.script, ["test -x /opt/webapp/run"]);
    assert!(v.continue_distribute_on_failure && !v.source_validation_only);
    assert_eq!(p.error_handling.on_customizer_error, OnError::Abort);
    assert_eq!(p.error_handling.on_validation_error, OnError::Cleanup);
    assert!(p.optimize_vm_boot);
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("continueDistributeOnFailure is true")),
        "{:?}",
        p.warnings()
    );
    i.optimize_vm_boot = Some("yes".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "optimizeVmBoot").contains("expected true or false"));
}

#[test]
fn source_validation_only_refuses_what_would_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    i.source_validation_only = Some("true".into());
    i.validation_script = Some("test -d /etc".into());
    i.inline_script = Some("echo hi".into());
    i.cleanup_artifacts_on_image = Some("true".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "inlineScript").contains("sourceValidationOnly"));
    assert!(problem_of(&e, "cleanupArtifactsOnImage").contains("sourceValidationOnly"));
    i.inline_script = None;
    i.cleanup_artifacts_on_image = None;
    let p = plan(&i, dir.path()).unwrap();
    assert!(p.source_validation_only());
}

#[test]
fn staging_tags_delivery_and_build_vm() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    i.managed_resource_tags = Some("costCenter=1234\n# comment\nowner = platform".into());
    i.artifact_delivery = Some("VM".into());
    i.vnet_subnet_id = Some(rid("Microsoft.Network/virtualNetworks/vnet/subnets/build"));
    i.container_instance_subnet_id =
        Some(rid("Microsoft.Network/virtualNetworks/vnet/subnets/aci"));
    i.build_vm_identities = Some(rid(
        "Microsoft.ManagedIdentity/userAssignedIdentities/build-vm",
    ));
    let p = plan(&i, dir.path()).unwrap();
    assert_eq!(
        p.managed_resource_tags,
        [
            ("costCenter".to_owned(), "1234".to_owned()),
            ("owner".to_owned(), "platform".to_owned())
        ]
    );
    assert_eq!(p.artifact_delivery, ArtifactDelivery::Vm);
    assert_eq!(p.build_vm.identities[0].name(), "build-vm");
    assert_eq!(p.build_vm.container_instance_subnet.unwrap().name(), "aci");

    i.managed_resource_tags = Some("bad/key=1".into());
    i.artifact_delivery = Some("service".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "managedResourceTags").contains("'/'"));
    assert!(problem_of(&e, "artifactDelivery").contains("expected one of auto, vm"));
}

#[test]
fn a_customizers_file_is_read_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    std::fs::write(
        dir.path().join("steps.json"),
        r#"[{"type": "Shell", "name": "motd", "inline": ["echo built | sudo tee /etc/motd"]}]"#,
    )
    .unwrap();
    i.customizers_file = Some("steps.json".into());
    let p = plan(&i, dir.path()).unwrap();
    assert_eq!(p.extra_customizers.len(), 1);
    assert_eq!(p.extra_customizers[0].name(), "motd");

    i.customizers_file = Some("nowhere.json".into());
    let e = errors(&i, dir.path());
    assert!(problem_of(&e, "customizersFile").contains("nowhere.json"));
}

#[test]
fn secrets_in_scripts_are_named_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = valid(dir.path());
    i.inline_script = Some("curl -u admin:Sup3rS3cret https://repo.example/pkg".into());
    i.validation_script = Some("test -n Sup3rS3cret".into());
    let p = plan(&i, dir.path()).unwrap();
    let found = exposure::find(&p, [("REPO_PASSWORD", "Sup3rS3cret"), ("SHORT", "pkg")]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].value, "Sup3rS3cret");
    let w = found[0].warning();
    assert!(w.contains("inlineScript and validationScript"), "{w}");
    assert!(w.contains("REPO_PASSWORD") && w.contains("buildVmIdentities"));
    assert!(!w.contains("Sup3rS3cret"));
    assert!(exposure::find(&p, [("OTHER", "not-in-the-script")]).is_empty());
}
