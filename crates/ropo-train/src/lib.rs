//! Training orchestration: SFT, preference training with any `ropo-core` loss, evaluation and
//! the built-in noisy-preference experiment, tying `ropo-models` and `ropo-data` together.
//! Generic over burn's autodiff backends; the caller picks the backend.

pub mod config;
pub mod data_parallel;
pub mod dataset_experiment;
pub mod detection;
mod error;
pub mod eval;
mod eval_set;
pub mod experiment;
pub mod framework;
mod gold_start;
pub mod grid;
pub mod label_noise;
pub mod layer_checkpointing;
pub mod loss_entry;
pub mod optim;
pub mod paired;
pub mod plots;
pub mod records;
pub mod reference;
pub mod report;
pub mod rounds_report;
pub mod run;
pub mod schedule;
pub mod scoring;
pub mod seeds;
pub mod session;
pub mod sft;
pub mod step;
pub mod store;
pub mod summary;
pub mod trainer;
pub mod trainer_output;

pub use error::TrainError;
