//! The process environment as the agent hands it over: captured once at start, secrets then
//! removed from the process so no child process (the Azure CLI, say) inherits them, and the
//! pipeline variables the task uses read into [`PipelineContext`].

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Variable-name prefixes and names that carry secrets; task-lib removes the same ones on load.
const SECRET_PREFIXES: &[&str] = &["ENDPOINT_AUTH_", "SECRET_", "SECUREFILE_TICKET_"];
/// `AZURE_CLIENT_SECRET` is read from the snapshot for sign-in outside a pipeline; the Azure CLI,
/// which the task may start, has no use for it.
const SECRET_NAMES: &[&str] = &[
    "SYSTEM_ACCESSTOKEN",
    "AGENT_PROXYPASSWORD",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    // GitHub Actions: what asks the runner for OIDC tokens, and the runner's own token.
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
];

/// An immutable snapshot of environment variables.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// Snapshot of the current process environment (values that are not UTF-8 are skipped).
    pub fn capture() -> Environment {
        Environment {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Snapshot, then removes secret-bearing variables from the process environment.
    ///
    /// # Safety
    /// Must run before any other thread exists (first thing in `main`, before the async runtime
    /// starts): changing the environment while another thread reads it is undefined behaviour.
    pub unsafe fn capture_and_scrub() -> Environment {
        let env = Environment::capture();
        for name in env.vars.keys().filter(|name| is_secret_variable(name)) {
            // SAFETY: the caller guarantees the process is still single-threaded.
            unsafe { std::env::remove_var(name) };
        }
        env
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, `None` when unset or empty (the agent sets empty inputs to "").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Like [`Environment::get`], falling back to a case-insensitive match of the name.
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.get(name).or_else(|| {
            self.vars
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty())
                .map(|(_, v)| v.as_str())
        })
    }

    /// True when the variable is set to `true` (case-insensitive), as task-lib reads booleans.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Every variable whose name starts with `prefix` (compared case-insensitively), with the
    /// rest of its name.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.vars.iter().filter_map(move |(k, v)| {
            let head = k.get(..prefix.len())?;
            head.eq_ignore_ascii_case(prefix)
                .then(|| (&k[prefix.len()..], v.as_str()))
        })
    }
}

pub fn is_secret_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_PREFIXES.iter().any(|p| upper.starts_with(p)) || SECRET_NAMES.contains(&upper.as_str())
}

/// The pipeline variables the task reads, with what each falls back to outside a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineContext {
    /// `TF_BUILD`: running under an agent.
    pub in_pipeline: bool,
    /// `System.Debug`: show `##[debug]` lines.
    pub debug: bool,
    /// `System.DefaultWorkingDirectory`: relative paths resolve against it.
    pub working_directory: PathBuf,
    /// `Agent.TempDirectory`: scratch files such as the run summary.
    pub temp_directory: PathBuf,
    pub release_id: Option<String>,
    pub release_attempt: Option<String>,
    pub build_id: Option<String>,
    pub build_number: Option<String>,
    /// `System.JobAttempt`: a build's retry count (releases have `Release.AttemptNumber`).
    pub job_attempt: Option<String>,
    pub collection_uri: Option<String>,
    pub team_project: Option<String>,
    pub team_project_id: Option<String>,
    pub definition_name: Option<String>,
    pub repository: Option<String>,
    pub source_version: Option<String>,
    pub plan_id: Option<String>,
    pub job_id: Option<String>,
    pub host_type: Option<String>,
    pub oidc_request_uri: Option<String>,
}

impl PipelineContext {
    /// The agent's variables; under GitHub Actions (`GITHUB_ACTIONS=true` and no `TF_BUILD`)
    /// the runner's, mapped onto the same fields ([`PipelineContext::from_github`]).
    pub fn from_env(env: &Environment) -> PipelineContext {
        if !env.flag("TF_BUILD") && env.flag("GITHUB_ACTIONS") {
            return PipelineContext::from_github(env);
        }
        let owned = |name: &str| env.get(name).map(str::to_owned);
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        PipelineContext {
            in_pipeline: env.flag("TF_BUILD"),
            debug: env.flag("SYSTEM_DEBUG"),
            working_directory: env
                .get("SYSTEM_DEFAULTWORKINGDIRECTORY")
                .map(PathBuf::from)
                .unwrap_or(cwd),
            temp_directory: env
                .get("AGENT_TEMPDIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            release_id: owned("RELEASE_RELEASEID"),
            release_attempt: owned("RELEASE_ATTEMPTNUMBER"),
            build_id: owned("BUILD_BUILDID"),
            build_number: owned("BUILD_BUILDNUMBER"),
            job_attempt: owned("SYSTEM_JOBATTEMPT"),
            collection_uri: owned("SYSTEM_COLLECTIONURI")
                .or_else(|| owned("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")),
            team_project: owned("SYSTEM_TEAMPROJECT"),
            team_project_id: owned("SYSTEM_TEAMPROJECTID"),
            definition_name: owned("BUILD_DEFINITIONNAME")
                .or_else(|| owned("RELEASE_DEFINITIONNAME")),
            repository: owned("BUILD_REPOSITORY_NAME"),
            source_version: owned("BUILD_SOURCEVERSION"),
            plan_id: owned("SYSTEM_PLANID"),
            job_id: owned("SYSTEM_JOBID"),
            host_type: owned("SYSTEM_HOSTTYPE"),
            oidc_request_uri: owned("SYSTEM_OIDCREQUESTURI"),
        }
    }

    /// A GitHub Actions job (REFERENCE §8): relative paths against `GITHUB_WORKSPACE`, scratch
    /// files in `RUNNER_TEMP`, the run id and attempt (`GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT`)
    /// where a build's id and job attempt go, so blobs land in `<run id>-<attempt>/` and
    /// templates are named `t_<run id>_…`; debug lines with `RUNNER_DEBUG=1`. The job's mark in
    /// names comes from the job's name (`GITHUB_JOB`, shared by a matrix's jobs) and the
    /// attempt; the random part of [`crate::names::Stamp`] tells a matrix's jobs apart.
    pub fn from_github(env: &Environment) -> PipelineContext {
        let owned = |name: &str| env.get(name).map(str::to_owned);
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let repository_url = match (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")) {
            (Some(server), Some(repo)) => Some(format!("{}/{repo}", server.trim_end_matches('/'))),
            _ => None,
        };
        PipelineContext {
            in_pipeline: false,
            debug: env.get("RUNNER_DEBUG").is_some_and(|v| v.trim() == "1"),
            working_directory: env
                .get("GITHUB_WORKSPACE")
                .map(PathBuf::from)
                .unwrap_or(cwd),
            temp_directory: env
                .get("RUNNER_TEMP")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            build_id: owned("GITHUB_RUN_ID"),
            build_number: owned("GITHUB_RUN_NUMBER"),
            job_attempt: owned("GITHUB_RUN_ATTEMPT"),
            collection_uri: repository_url,
            team_project: owned("GITHUB_REPOSITORY_OWNER"),
            definition_name: owned("GITHUB_WORKFLOW"),
            repository: owned("GITHUB_REPOSITORY"),
            source_version: owned("GITHUB_SHA"),
            job_id: owned("GITHUB_JOB"),
            ..PipelineContext::default()
        }
    }

    /// The id that names this run in blob and template names: the release id, or else the build
    /// id, never a literal "undefined" (the original task's bug in YAML pipelines).
    pub fn run_id(&self) -> Option<&str> {
        self.release_id.as_deref().or(self.build_id.as_deref())
    }

    /// The attempt of this run: the release's attempt number, else the job's attempt, else 1.
    pub fn attempt(&self) -> &str {
        let attempt = if self.release_id.is_some() {
            self.release_attempt.as_deref()
        } else {
            self.job_attempt.as_deref()
        };
        attempt.unwrap_or("1")
    }
}

/// The job's access token, used to ask Azure DevOps for an OIDC token. Always present in a
/// pipeline as the `SystemVssConnection` endpoint's parameter; `System.AccessToken` only when the
/// pipeline maps it.
pub fn job_access_token(env: &Environment) -> Option<&str> {
    env.get_ignore_case("ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN")
        .or_else(|| env.get("SYSTEM_ACCESSTOKEN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_skip_empty_values_and_fall_back_case_insensitively() {
        let env = Environment::from_pairs([("INPUT_VMSIZE", ""), ("Endpoint_Url_Abc", "u")]);
        assert_eq!(env.get("INPUT_VMSIZE"), None);
        assert_eq!(env.get("ENDPOINT_URL_ABC"), None);
        assert_eq!(env.get_ignore_case("ENDPOINT_URL_ABC"), Some("u"));
    }

    #[test]
    fn flags_follow_task_lib() {
        let env = Environment::from_pairs([("A", "True"), ("B", "yes"), ("C", " TRUE ")]);
        assert!(env.flag("A"));
        assert!(!env.flag("B"));
        assert!(env.flag("C"));
        assert!(!env.flag("MISSING"));
    }

    #[test]
    fn secret_variables_are_recognised() {
        for name in [
            "ENDPOINT_AUTH_abc",
            "ENDPOINT_AUTH_PARAMETER_abc_SERVICEPRINCIPALKEY",
            "SECRET_MYPASS",
            "SYSTEM_ACCESSTOKEN",
            "AGENT_PROXYPASSWORD",
            "SECUREFILE_TICKET_1",
            "AZURE_CLIENT_SECRET",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        ] {
            assert!(is_secret_variable(name), "{name}");
        }
        for name in [
            "ENDPOINT_URL_abc",
            "ENDPOINT_DATA_abc_SUBSCRIPTIONID",
            "INPUT_VMSIZE",
        ] {
            assert!(!is_secret_variable(name), "{name}");
        }
    }

    #[test]
    fn run_id_prefers_the_release_and_never_invents_one() {
        let ctx = PipelineContext::from_env(&Environment::from_pairs([("BUILD_BUILDID", "42")]));
        assert_eq!(ctx.run_id(), Some("42"));
        let ctx = PipelineContext::from_env(&Environment::from_pairs([
            ("BUILD_BUILDID", "42"),
            ("RELEASE_RELEASEID", "7"),
        ]));
        assert_eq!(ctx.run_id(), Some("7"));
        assert_eq!(
            PipelineContext::from_env(&Environment::default()).run_id(),
            None
        );
    }

    #[test]
    fn prefix_listing_is_case_insensitive() {
        let env = Environment::from_pairs([
            ("ENDPOINT_DATA_id_SUBSCRIPTIONID", "s"),
            ("endpoint_data_id_ENVIRONMENT", "AzureCloud"),
            ("OTHER", "x"),
        ]);
        let mut keys: Vec<&str> = env
            .with_prefix("ENDPOINT_DATA_ID_")
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        assert_eq!(keys, ["ENVIRONMENT", "SUBSCRIPTIONID"]);
    }

    #[test]
    fn a_github_job_maps_onto_the_same_fields() {
        let env = Environment::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKSPACE", "/home/runner/work/app/app"),
            ("RUNNER_TEMP", "/home/runner/work/_temp"),
            ("GITHUB_RUN_ID", "9876543210"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "image"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "contoso/app"),
            ("GITHUB_SHA", "0123abcd"),
            ("RUNNER_DEBUG", "1"),
            ("SYSTEM_DEBUG", "false"),
        ]);
        let ctx = PipelineContext::from_env(&env);
        assert!(!ctx.in_pipeline);
        assert!(ctx.debug);
        assert_eq!(
            ctx.working_directory,
            PathBuf::from("/home/runner/work/app/app")
        );
        assert_eq!(ctx.temp_directory, PathBuf::from("/home/runner/work/_temp"));
        assert_eq!(ctx.run_id(), Some("9876543210"));
        assert_eq!(ctx.attempt(), "2");
        assert_eq!(
            ctx.collection_uri.as_deref(),
            Some("https://github.com/contoso/app")
        );
        assert_eq!(ctx.source_version.as_deref(), Some("0123abcd"));
        // The agent's variables win when both are set (an agent inside a runner, say).
        let mut pairs: Vec<(&str, &str)> = vec![("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ID", "1")];
        pairs.extend([("TF_BUILD", "True"), ("BUILD_BUILDID", "42")]);
        let ctx = PipelineContext::from_env(&Environment::from_pairs(pairs));
        assert!(ctx.in_pipeline);
        assert_eq!(ctx.run_id(), Some("42"));
    }
}
