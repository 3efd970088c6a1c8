//! The image build: staging the artifact, creating the template, running it and following it to
//! the end, reading its outputs, and cleaning up (or, on failure, showing why with the build
//! log; on cancellation, asking Image Builder to stop).

pub mod log;
pub mod outputs;
pub mod progress;
pub mod source;
pub mod summary;
