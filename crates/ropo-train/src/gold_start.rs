//! What the gold experiment starts from: the config validated, the backend seeded, the run folder's store opened, the SFT model trained or
//! reloaded from its snapshot, and the training pairs with their reference log-probs.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use ropo_models::{attention::TrainingBackend, CausalLm};

use crate::{
    config::GoldExperiment,
    records::Progress,
    reference::reference_logps,
    run::PreferenceSet,
    session::Session,
    sft::{run_sft, SftStage},
    store::{checkpoint, snapshot},
    TrainError,
};

/// See [`GoldExperiment::start`].
pub(crate) struct Start<B: TrainingBackend> {
    pub(crate) store: Option<PathBuf>,
    pub(crate) sft: CausalLm<B>,
    pub(crate) reference: CausalLm<B::InnerBackend>,
    pub(crate) session: Session,
    pub(crate) set: PreferenceSet,
}

impl GoldExperiment {
    /// What the gold experiment starts from: the config validated, the backend seeded, the
    /// run folder's checkpoint store opened, the SFT model (trained or reloaded), and the
    /// training pairs with their reference log-probs.
    pub(crate) fn start<B: TrainingBackend>(
        &self,
        device: &B::Device,
        folder: Option<&Path>,
        stop_after: Option<usize>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Start<B>, TrainError> {
        self.validate()?;
        B::seed(device, self.seeds().init());
        let store = folder.map(|f| f.join("checkpoints"));
        if let Some(store) = &store {
            std::fs::create_dir_all(store).map_err(TrainError::io(store))?;
        }
        let sft = self.sft_model::<B>(device, store.as_deref(), on_progress)?;
        let reference = sft.valid();
        let pairs = self
            .task
            .pairs(self.preference.pairs, self.seeds().train_pairs());
        let refs = reference_logps(&reference, &pairs, 256, 1, device, on_progress)?;
        Ok(Start {
            store,
            sft,
            reference,
            session: Session::new(stop_after),
            set: PreferenceSet::clean(pairs, refs),
        })
    }

    /// The SFT model: loaded from the run folder when an earlier session trained it.
    pub(crate) fn sft_model<B: TrainingBackend>(
        &self,
        device: &B::Device,
        store: Option<&Path>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<CausalLm<B>, TrainError> {
        let fresh = self.model_config().init::<B>(device);
        let Some(store) = store else {
            return self.train_sft(fresh, device, on_progress);
        };
        let saved = snapshot::open(store, "sft", &mut |warning| {
            on_progress(Progress::Warning(format!("{warning}; training SFT again")))
        })?;
        if let Some(saved) = saved {
            return checkpoint::load_model(&saved, fresh, device);
        }
        let model = self.train_sft(fresh, device, on_progress)?;
        checkpoint::save_model(&model, store, "sft", &[])?;
        Ok(model)
    }

    fn train_sft<B: TrainingBackend>(
        &self,
        model: CausalLm<B>,
        device: &B::Device,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<CausalLm<B>, TrainError> {
        let examples = self
            .task
            .sft_examples(self.sft.examples, self.seeds().sft_examples());
        let rows: Vec<(&[u32], &[u32])> = examples
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let stage = SftStage {
            steps: self.sft.steps,
            batch: self.sft.batch,
            lr: self.sft.lr,
            layer_checkpointing: false,
        };
        let order = self.seeds().sft_order();
        run_sft(model, &rows, stage, 1, order, device, on_progress)
    }
}
