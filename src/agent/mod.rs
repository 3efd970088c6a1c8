//! The contract with the Azure Pipelines agent: the environment it starts the task with
//! ([`environment`]), the service connection it describes there ([`endpoint`]), and the logging
//! commands the task answers with ([`command`], printed through [`console`]).

pub mod command;
pub mod console;
pub mod endpoint;
pub mod environment;
pub mod host;

pub use command::TaskResult;
pub use console::Console;
pub use endpoint::{Cloud, Credentials, ServiceConnection};
pub use environment::{Environment, PipelineContext};
pub use host::Host;
