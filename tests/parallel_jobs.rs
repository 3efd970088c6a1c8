//! Many images from one pipeline run: eight jobs of a matrix start the task at the same moment,
//! with the same build id, attempt, build-path folder name, storage account and resource group,
//! and a wall clock frozen at the same millisecond for all of them (libfaketime, the monotonic
//! clock left alone so timers still run). Each must build its own image from its own build path,
//! with a template and a blob of its own, and leave nothing behind.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aib_emulator::Config;
use common::pipeline::*;
use common::*;

const JOBS: usize = 8;

/// libfaketime's preload library, as Debian's `faketime` package installs it; scripts/test
/// installs the package, and in CI its absence fails the test.
fn libfaketime() -> Option<PathBuf> {
    let found = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "libfaketime is not installed (Debian: faketime); CI must run this test"
        );
        eprintln!("skipping: libfaketime is not installed (apt-get install faketime)");
    }
    found
}

/// The build path of job `index`: the sample tree, with a file only this job has.
fn job_package(root: &Path, index: usize) -> PathBuf {
    let package = root.join(format!("job{index}")).join("webapp");
    sample_artifacts(&package);
    std::fs::write(
        package.join(format!("job-{index}.txt")),
        format!("built by job {index}\n"),
    )
    .unwrap();
    package
}

#[tokio::test]
async fn eight_jobs_at_the_same_millisecond_never_collide() {
    let Some(preload) = libfaketime() else {
        return;
    };
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // Frozen: an absolute FAKETIME without '@' stops the wall clock there (libfaketime's
    // README), for every process alike; the real time, so SAS and tokens stay valid.
    let frozen = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    let mut runs = Vec::new();
    for index in 0..JOBS {
        let package = job_package(root.path(), index);
        let temp = root.path().join(format!("job{index}"));
        let mut vars = pipeline(&stack, &package, &temp);
        for (name, value) in [
            ("LD_PRELOAD", preload.display().to_string()),
            ("FAKETIME", frozen.clone()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
            // The agent gives every job of a run its own id.
            ("SYSTEM_JOBID", uuid::Uuid::new_v4().to_string()),
            ("SYSTEM_JOBATTEMPT", "1".to_owned()),
            ("BUILD_BUILDID", "4711".to_owned()),
        ] {
            vars.insert(name.to_owned(), value);
        }
        runs.push(tokio::spawn(run_task_async(&[], vars)));
    }
    let mut outputs = Vec::new();
    for run in runs {
        let (output, out) = run.await.unwrap();
        assert!(output.status.success(), "{out}");
        outputs.push(out);
    }

    // The clock really was frozen: every job named things at the same millisecond.
    let templates: Vec<String> = outputs
        .iter()
        .map(|out| output_variables(out)["templateName"].clone())
        .collect();
    let millis: BTreeSet<&str> = templates
        .iter()
        .map(|t| t.split('_').nth(2).unwrap())
        .collect();
    assert_eq!(millis.len(), 1, "the clock moved: {templates:?}");
    // Yet every job had a template and a blob of its own.
    assert_eq!(
        templates.iter().collect::<BTreeSet<_>>().len(),
        JOBS,
        "{templates:?}"
    );
    let blobs: Vec<String> = outputs
        .iter()
        .map(|out| {
            out.lines()
                .find_map(|l| l.strip_prefix("deleting storage blob imagebuilder-vststask\\"))
                .expect("each job removes its blob")
                .to_owned()
        })
        .collect();
    assert_eq!(
        blobs.iter().collect::<BTreeSet<_>>().len(),
        JOBS,
        "{blobs:?}"
    );
    assert!(blobs.iter().all(|b| b.starts_with("webapp/4711-1/webapp_")));
    let blob_millis: BTreeSet<&str> = blobs
        .iter()
        .map(|b| b.rsplit('/').next().unwrap().split('_').nth(1).unwrap())
        .collect();
    assert_eq!(blob_millis.len(), 1, "the clock moved: {blobs:?}");

    // Each template's artifact is its own job's build path: Image Builder downloaded, for every
    // job's blob, exactly the archive that job made, holding that job's file and no other's.
    let downloads = stack.emulator.downloads();
    assert_eq!(downloads.len(), JOBS, "{downloads:?}");
    let by_blob: BTreeMap<&str, &aib_emulator::Download> = downloads
        .iter()
        .map(|d| {
            let blob = d.url.split("/imagebuilder-vststask/").nth(1).unwrap();
            (blob, d)
        })
        .collect();
    for (index, (out, blob)) in outputs.iter().zip(&blobs).enumerate() {
        let download = by_blob
            .get(percent_encoded(blob).as_str())
            .or_else(|| by_blob.get(blob.as_str()))
            .unwrap_or_else(|| panic!("job {index}'s blob {blob} was not downloaded: {by_blob:?}"));
        assert_eq!(download.error, None);
        let sha256 = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("created archive ")
                    .and_then(|l| l.rsplit("sha256 ").next())
            })
            .unwrap()
            .trim_end_matches(')');
        assert_eq!(download.sha256, sha256, "job {index}");
        let own: Vec<&String> = download
            .entries
            .iter()
            .filter(|e| e.starts_with("job-"))
            .collect();
        assert_eq!(own, [&format!("job-{index}.txt")], "job {index}");
    }

    // Nothing is left behind: no template, no blob.
    until_no_template_left(&stack).await;
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
    assert_eq!(
        stack
            .emulator
            .template_events()
            .iter()
            .filter(|e| e.event == "created")
            .count(),
        JOBS
    );
    assert!(stack.emulator.templates().is_empty());
}

/// A blob name as it appears in a URL path.
fn percent_encoded(blob: &str) -> String {
    blob.split('/')
        .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}
