//! aib-task: the Azure VM Image Builder task for Azure Pipelines as one native binary.
//!
//! Data flows one way: the agent's environment ([`agent`]) and the task's [`inputs`] become a
//! plan; [`auth`] signs in through the one HTTP client of [`transport`]; [`cli`] drives it all
//! and turns the outcome into logging commands and an exit code.

pub mod agent;
pub mod archive;
pub mod arm;
pub mod auth;
pub mod blob_url;
pub mod build;
pub mod cli;
pub mod customizers_file;
pub mod image_template;
pub mod inputs;
pub mod names;
pub mod plan;
pub mod preflight;
pub mod rehearse;
pub mod resource_id;
pub mod sas;
pub mod staging;
pub mod storage;
pub mod transport;
pub mod upload;

use std::sync::Arc;

use agent::Console;
use agent::console::DebugSink;

/// Routes `tracing` events to `##[debug]` lines (masked like every other line). Debug detail
/// comes from this crate only unless `RUST_LOG` asks for more.
pub fn init_tracing(console: &Arc<Console>) {
    if !console.debug_enabled() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("aib_task=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(DebugSink(Arc::clone(console)))
        .with_ansi(false)
        .without_time()
        .try_init();
}
