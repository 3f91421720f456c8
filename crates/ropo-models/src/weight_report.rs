//! What loading weights into a model found, from any source (safetensors, a llama2.c `.bin`,
//! a GGUF file): gathered so that one error lists every missing, unexpected and wrongly shaped
//! tensor.

use std::{collections::BTreeSet, path::Path};

use burn::tensor::backend::Backend;
use burn_store::ApplyResult;

use crate::{CausalLm, ModelError};

/// What loading one or more weight sources into a model found, gathered so one error can list
/// every missing, unexpected and wrongly shaped tensor.
pub(crate) struct WeightReport {
    ignorable: &'static [&'static str],
    applied: BTreeSet<String>,
    missing: Option<BTreeSet<String>>,
    unexpected: Vec<String>,
    mismatched: Vec<String>,
}

impl WeightReport {
    /// An empty report for `model` (whose family says which stored buffers to ignore).
    pub(crate) fn new<B: Backend>(model: &CausalLm<B>) -> Self {
        Self {
            ignorable: model.family().family_config().ignorable_tensors(),
            applied: BTreeSet::new(),
            missing: None,
            unexpected: Vec::new(),
            mismatched: Vec::new(),
        }
    }

    /// Adds the outcome of applying one source (a shard, a file).
    pub(crate) fn add(&mut self, result: ApplyResult) {
        self.applied.extend(result.applied);
        let not_here: BTreeSet<String> = result.missing.into_iter().map(|(path, _)| path).collect();
        self.missing = Some(match self.missing.take() {
            Some(before) => before.intersection(&not_here).cloned().collect(),
            None => not_here,
        });
        let ignorable = &self.ignorable;
        self.unexpected.extend(
            result
                .unused
                .into_iter()
                .filter(|name| !ignorable.iter().any(|suffix| name.ends_with(suffix))),
        );
        self.mismatched
            .extend(result.errors.into_iter().map(|e| format!("{e:?}")));
    }

    /// `Ok` when every parameter was loaded and nothing was left over; else one error naming
    /// the tensors.
    pub(crate) fn finish(self, checkpoint: &Path) -> Result<(), ModelError> {
        let Some(missing) = self.missing else {
            return Err(ModelError::Weights {
                path: checkpoint.to_path_buf(),
                details: "no weights file was read".into(),
            });
        };
        let missing: Vec<String> = missing
            .into_iter()
            .filter(|name| !self.applied.contains(name))
            .collect();
        let mut details = Vec::new();
        if !missing.is_empty() {
            details.push(format!("missing tensors: {}", missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            details.push(format!(
                "unexpected tensors: {}",
                self.unexpected.join(", ")
            ));
        }
        if !self.mismatched.is_empty() {
            details.push(format!("wrong tensors: {}", self.mismatched.join("; ")));
        }
        if details.is_empty() {
            Ok(())
        } else {
            Err(ModelError::Weights {
                path: checkpoint.to_path_buf(),
                details: details.join("; "),
            })
        }
    }
}
