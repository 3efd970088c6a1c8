//! The names a run gives what it creates in Azure: the artifact blob and the generated template
//! name. Several jobs of one pipeline run (a matrix) start this task at the same moment with the
//! same build id, attempt and often the same folder name, so the original layout alone
//! (`<folder>/<run id>-<attempt>/<folder>_<epoch ms>.zip`, `t_<run id>_<epoch ms>`) can give two
//! jobs the same name. Every name therefore ends in a [`Stamp`]'s mark: a part derived from the
//! agent's job id and job attempt (different for every job of a run) and a random part
//! (different for every start of the task), so names differ even when clocks agree to the
//! millisecond. Pure, given the stamp.

use sha2::{Digest, Sha256};

use crate::agent::PipelineContext;

/// The most characters Image Builder allows in a template name (`^[A-Za-z0-9-_.]{1,64}$`).
pub const TEMPLATE_NAME_MAX: usize = 64;

/// A character Image Builder allows in a template name.
pub fn template_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// When and by which job a name was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch, as the original task's names carry them.
    pub epoch_ms: u128,
    /// Fourteen lower-case hex digits: six from the job, eight random.
    pub mark: String,
}

impl Stamp {
    /// Now, for the job `context` describes, with fresh randomness.
    pub fn now(context: &PipelineContext) -> Stamp {
        let epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let random = uuid::Uuid::new_v4();
        Stamp::new(epoch_ms, context, &random.as_bytes()[..4])
    }

    /// A stamp from its parts: `random` (four bytes) supplies the last eight hex digits.
    pub fn new(epoch_ms: u128, context: &PipelineContext, random: &[u8]) -> Stamp {
        let job = job_digest(context);
        let mut mark: String = job[..3].iter().map(|b| format!("{b:02x}")).collect();
        mark.extend(random.iter().take(4).map(|b| format!("{b:02x}")));
        Stamp { epoch_ms, mark }
    }
}

/// The job's identity as the agent gives it: `System.JobId` (a GUID per job) and
/// `System.JobAttempt`; a terminal run has neither and relies on the random part.
fn job_digest(context: &PipelineContext) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(context.job_id.as_deref().unwrap_or("local").as_bytes());
    hasher.update([0]);
    hasher.update(context.job_attempt.as_deref().unwrap_or("1").as_bytes());
    hasher.finalize().into()
}

/// `<folder>/<run id>-<attempt>/<folder>_<epoch ms>_<mark>.zip`: the original task's layout, with
/// the build id where there is no release and `local` outside a pipeline (never "undefined"),
/// and the job's mark.
pub fn blob_name(folder: &str, context: &PipelineContext, stamp: &Stamp) -> String {
    let run = context.run_id().unwrap_or("local");
    format!(
        "{folder}/{run}-{}/{folder}_{}_{}.zip",
        context.attempt(),
        stamp.epoch_ms,
        stamp.mark
    )
}

/// `t_<run id>_<epoch ms>_<mark>`, within Image Builder's name rule: characters it refuses are
/// left out of the run id, and a long run id is cut, never the time or the mark.
pub fn template_name(context: &PipelineContext, stamp: &Stamp) -> String {
    let run: String = context
        .run_id()
        .unwrap_or("local")
        .chars()
        .filter(|&c| template_name_char(c))
        .collect();
    let run = if run.is_empty() { "local" } else { &run };
    let tail = format!("_{}_{}", stamp.epoch_ms, stamp.mark);
    let room = TEMPLATE_NAME_MAX.saturating_sub(2 + tail.len());
    let run: String = run.chars().take(room).collect();
    format!("t_{run}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Environment;

    fn ctx(pairs: &[(&str, &str)]) -> PipelineContext {
        PipelineContext::from_env(&Environment::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn jobs_of_one_run_get_different_names_at_the_same_millisecond() {
        let job = |id: &str| {
            ctx(&[
                ("BUILD_BUILDID", "4711"),
                ("SYSTEM_JOBATTEMPT", "1"),
                ("SYSTEM_JOBID", id),
            ])
        };
        let (a, b) = (
            job("3dc8fd7e-4368-5a92-293e-d53cefc8c4c3"),
            job("12f1170f-54f2-53f3-20dd-22fc7dff55f9"),
        );
        // Same clock, same random bytes: only the job differs.
        let (sa, sb) = (
            Stamp::new(1764219600000, &a, &[7, 7, 7, 7]),
            Stamp::new(1764219600000, &b, &[7, 7, 7, 7]),
        );
        assert_ne!(sa, sb);
        assert_ne!(blob_name("webapp", &a, &sa), blob_name("webapp", &b, &sb));
        assert_ne!(template_name(&a, &sa), template_name(&b, &sb));
        // Same job, same clock: the random part tells two starts apart.
        assert_ne!(
            Stamp::new(1, &a, &[1, 2, 3, 4]),
            Stamp::new(1, &a, &[1, 2, 3, 5])
        );
        // A job's rerun (next attempt) differs too.
        let rerun = ctx(&[
            ("BUILD_BUILDID", "4711"),
            ("SYSTEM_JOBATTEMPT", "2"),
            ("SYSTEM_JOBID", "3dc8fd7e-4368-5a92-293e-d53cefc8c4c3"),
        ]);
        assert_ne!(
            Stamp::new(1, &a, &[0, 0, 0, 0]).mark,
            Stamp::new(1, &rerun, &[0, 0, 0, 0]).mark
        );
        let now = Stamp::now(&a);
        assert_eq!(now.mark.len(), 14);
        assert!(
            now.mark
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn names_keep_the_original_layout() {
        let release = ctx(&[
            ("RELEASE_RELEASEID", "17"),
            ("RELEASE_ATTEMPTNUMBER", "2"),
            ("BUILD_BUILDID", "42"),
        ]);
        let stamp = Stamp {
            epoch_ms: 1764219600000,
            mark: "a1b2c3d4e5f607".into(),
        };
        assert_eq!(
            blob_name("webapp", &release, &stamp),
            "webapp/17-2/webapp_1764219600000_a1b2c3d4e5f607.zip"
        );
        assert_eq!(
            template_name(&release, &stamp),
            "t_17_1764219600000_a1b2c3d4e5f607"
        );
        let terminal = PipelineContext::default();
        assert_eq!(
            blob_name("my app", &terminal, &stamp),
            "my app/local-1/my app_1764219600000_a1b2c3d4e5f607.zip"
        );
        assert_eq!(
            template_name(&terminal, &stamp),
            "t_local_1764219600000_a1b2c3d4e5f607"
        );
    }

    #[test]
    fn template_names_stay_within_the_rule_and_keep_their_mark() {
        let stamp = Stamp {
            epoch_ms: 1764219600000,
            mark: "a1b2c3d4e5f607".into(),
        };
        let long = ctx(&[("BUILD_BUILDID", &"9".repeat(80))]);
        let name = template_name(&long, &stamp);
        assert_eq!(name.len(), TEMPLATE_NAME_MAX);
        assert!(name.ends_with("_1764219600000_a1b2c3d4e5f607"), "{name}");
        let odd = ctx(&[("BUILD_BUILDID", "r/1 2")]);
        assert_eq!(
            template_name(&odd, &stamp),
            "t_r12_1764219600000_a1b2c3d4e5f607"
        );
        let nothing = ctx(&[("BUILD_BUILDID", "///")]);
        assert!(template_name(&nothing, &stamp).starts_with("t_local_"));
        assert!(crate::plan::valid_template_name(&template_name(
            &long, &stamp
        )));
    }
}
