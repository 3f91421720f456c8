//! A multi-round run's state between rounds (a framework method's filtered and resampled
//! pairs and what the filter did so far): the policy and a JSON state in the sealed snapshot
//! `round-N`, N the next round; the newest two are kept.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use ropo_models::CausalLm;
use serde::{de::DeserializeOwned, Serialize};

use super::{checkpoint, snapshot};
use crate::TrainError;

/// The state's file in a round snapshot.
const STATE_FILE: &str = "state.json";

/// Writes `policy` and `state` as the sealed snapshot `dir/round-{next_round:06}`, keeping
/// the newest two.
pub fn save_round<B: AutodiffBackend, S: Serialize>(
    dir: &Path,
    next_round: usize,
    policy: &CausalLm<B>,
    state: &S,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let name = format!("round-{next_round:06}");
    let text = super::to_json(&dir.join(&name).join(STATE_FILE), state)?;
    checkpoint::save_model(policy, dir, &name, &[(STATE_FILE, &text)])?;
    snapshot::prune(dir, "round-", 2)
}

/// The policy and state of the newest intact round snapshot in `dir`, loaded into `fresh`;
/// `fresh` untouched and no state when there is none. Corrupt newer snapshots are set aside
/// and reported through `warn`.
pub fn load_round<B: AutodiffBackend, S: DeserializeOwned>(
    dir: &Path,
    fresh: CausalLm<B>,
    device: &B::Device,
    warn: &mut dyn FnMut(String),
) -> Result<(CausalLm<B>, Option<S>), TrainError> {
    let Some(saved) = snapshot::newest(dir, "round-", warn)? else {
        return Ok((fresh, None));
    };
    let path = saved.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    let state = serde_json::from_str(&text)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let policy = checkpoint::load_model(&saved, fresh, device)?;
    Ok((policy, Some(state)))
}
