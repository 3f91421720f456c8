//! A grid of runs: every method at every label-noise rate for every seed, all from the same
//! starting pairs. Runs an earlier session of the same store finished are taken from its
//! `finished.jsonl` instead of being trained again; the gold experiment, the ablation and the
//! dataset experiment are grids that differ only in their methods and in how a run is judged.

use std::path::{Path, PathBuf};

use ropo_models::{attention::TrainingBackend, CausalLm};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    config::PreferenceStage,
    records::Progress,
    run::{Method, PreferenceSet, Run},
    seeds::Seeds,
    store::finished::{load_finished, save_finished},
    TrainError,
};

/// The result of one run of a grid, as `finished.jsonl` keeps it.
pub trait GridResult: Clone + Serialize + DeserializeOwned {
    /// The run's method name, noise rate and seed index.
    fn key(&self) -> (&str, f64, u64);

    /// What the caller is told when the run is finished (trained or taken from the store).
    fn finished_event(&self) -> Option<Progress> {
        None
    }
}

/// One cell of a grid: a method on the pairs under one noise draw.
pub struct Cell<'a> {
    /// The method.
    pub method: &'a Method,
    /// The noise rate η.
    pub noise: f64,
    /// The seed index.
    pub seed: u64,
    /// The pairs with noise at rate η drawn for this seed.
    pub set: &'a PreferenceSet,
    /// The run's own state folder, when the grid has a store.
    pub store: Option<PathBuf>,
}

impl<'a> Cell<'a> {
    /// The cell's run with `stage`, the grid's `seeds` and `reference`, and [`Run::new`]'s
    /// defaults for the rest.
    pub fn run<B: TrainingBackend>(
        &'a self,
        stage: &'a PreferenceStage,
        seeds: Seeds,
        reference: &'a CausalLm<B::InnerBackend>,
    ) -> Run<'a, B> {
        Run::new(self.method, self.set, stage, (seeds, self.seed), reference)
    }
}

/// Trains and judges one cell, given what its seed's runs share and the progress sink.
pub type CellRunner<'a, S, R> =
    dyn FnMut(&S, Cell<'_>, &mut dyn FnMut(Progress)) -> Result<R, TrainError> + 'a;

/// Methods × noise rates × seeds.
pub struct Grid<'a> {
    /// The methods, in table order.
    pub methods: &'a [Method],
    /// The noise rates η.
    pub noise: &'a [f64],
    /// Seed indices `0..seeds`.
    pub seeds: u64,
    /// Where each seed's noise is drawn from.
    pub streams: Seeds,
    /// Where finished runs and each run's state are kept (`None`: nothing is kept).
    pub store: Option<&'a Path>,
}

impl Grid<'_> {
    /// Runs every cell in order (seed, then η, then method): `per_seed` prepares what a seed's
    /// runs share (e.g. evaluation sets), `cell` trains and judges one run.
    pub fn run<R: GridResult, S>(
        &self,
        base: &PreferenceSet,
        per_seed: &mut dyn FnMut(u64) -> Result<S, TrainError>,
        cell: &mut CellRunner<'_, S, R>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<R>, TrainError> {
        let finished_file = self.store.map(|s| s.join("finished.jsonl"));
        let mut finished: Vec<R> = match &finished_file {
            Some(path) => load_finished(path)?,
            None => Vec::new(),
        };
        let total = self.methods.len() * self.noise.len() * self.seeds as usize;
        let mut results = Vec::with_capacity(total);
        for seed in 0..self.seeds {
            let shared = per_seed(seed)?;
            for &noise in self.noise {
                let set = base.with_noise(noise, self.streams.noise(seed))?;
                for method in self.methods {
                    let done = finished
                        .iter()
                        .position(|r| r.key() == (method.name.as_str(), noise, seed));
                    if let Some(index) = done {
                        let result = finished.remove(index);
                        on_progress_finished(&result, on_progress);
                        results.push(result);
                        continue;
                    }
                    on_progress(Progress::RunStarted {
                        index: results.len(),
                        total,
                        method: method.name.clone(),
                        noise,
                        seed,
                    });
                    let store = self
                        .store
                        .map(|s| s.join(format!("{}-eta{noise}-seed{seed}", method.name)));
                    let here = Cell {
                        method,
                        noise,
                        seed,
                        set: &set,
                        store: store.clone(),
                    };
                    let result = cell(&shared, here, on_progress)?;
                    on_progress_finished(&result, on_progress);
                    results.push(result);
                    if let (Some(path), Some(dir)) = (&finished_file, &store) {
                        save_finished(path, &results)?;
                        if dir.exists() {
                            std::fs::remove_dir_all(dir).map_err(TrainError::io(dir))?;
                        }
                    }
                }
            }
        }
        Ok(results)
    }
}

fn on_progress_finished<R: GridResult>(result: &R, on_progress: &mut dyn FnMut(Progress)) {
    if let Some(event) = result.finished_event() {
        on_progress(event);
    }
}
