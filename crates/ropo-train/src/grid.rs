//! A grid of runs: every method at every label-noise rate for every seed, all from the same
//! starting pairs. The seeds are shared out over worker threads (each run depends only on its
//! own seed, so the results do not depend on how many); runs an earlier session of the same
//! store finished are taken from its `finished.jsonl` instead of being trained again. The
//! gold experiment and the dataset experiment are grids that differ only in their methods and
//! in how a run is judged.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Mutex,
    },
};

use ropo_models::{attention::TrainingBackend, CausalLm};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    label_noise::LabelNoise,
    records::Progress,
    run::{Method, PreferenceSet, Run},
    schedule::StepSchedule,
    seeds::Seeds,
    store::finished::{load_finished, save_finished},
    TrainError,
};

/// The result of one run of a grid, as `finished.jsonl` keeps it.
pub trait GridResult: Clone + Serialize + DeserializeOwned + Send {
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
    /// The cell's run with `schedule`, the grid's `seeds` and `reference`, and [`Run::new`]'s
    /// defaults for the rest.
    pub fn run<B: TrainingBackend>(
        &'a self,
        schedule: StepSchedule,
        seeds: Seeds,
        reference: &'a CausalLm<B::InnerBackend>,
    ) -> Run<'a, B> {
        Run::new(
            self.method,
            self.set,
            schedule,
            (seeds, self.seed),
            reference,
        )
    }
}

/// Prepares what one seed's runs share (e.g. evaluation sets); called on the worker thread
/// that trains them.
pub type SeedSetup<'a, S> = dyn Fn(u64) -> Result<S, TrainError> + Sync + 'a;

/// Trains and judges one cell, given what its seed's runs share and the progress sink.
pub type CellRunner<'a, S, R> =
    dyn Fn(&S, Cell<'_>, &mut dyn FnMut(Progress)) -> Result<R, TrainError> + Sync + 'a;

/// Methods × noise rates × seeds.
pub struct Grid<'a> {
    /// The methods, in table order.
    pub methods: &'a [Method],
    /// The noise rates η.
    pub noise: &'a [f64],
    /// How labels are flipped at each rate.
    pub labels: &'a LabelNoise,
    /// Seed indices `0..seeds`.
    pub seeds: u64,
    /// Where each seed's noise is drawn from.
    pub streams: Seeds,
    /// Where finished runs and each run's state are kept (`None`: nothing is kept).
    pub store: Option<&'a Path>,
    /// Worker threads, each training one seed's runs at a time (at least 1).
    pub jobs: usize,
}

/// Results of the whole grid, by position in grid order, as they finish.
struct Finished<R> {
    /// Runs an earlier session finished, not yet claimed by their cell.
    earlier: Vec<R>,
    /// Every result so far, with its position in grid order.
    done: Vec<(usize, R)>,
}

impl Grid<'_> {
    /// Runs every cell: `per_seed` prepares what a seed's runs share, `cell` trains and judges
    /// one run. Seeds go to worker threads; within a seed the order is η, then method. The
    /// results come back in grid order (seed, then η, then method) whatever the number of
    /// workers; `on_progress` is called on this thread. The first error ends the grid: workers
    /// start no new run after it, and it is returned.
    pub fn run<R: GridResult, S>(
        &self,
        base: &PreferenceSet,
        per_seed: &SeedSetup<'_, S>,
        cell: &CellRunner<'_, S, R>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<R>, TrainError> {
        let finished_file = self.store.map(|s| s.join("finished.jsonl"));
        let earlier: Vec<R> = match &finished_file {
            Some(path) => load_finished(path)?,
            None => Vec::new(),
        };
        let finished = Mutex::new(Finished {
            earlier,
            done: Vec::new(),
        });
        let next_seed = AtomicU64::new(0);
        let failed = AtomicBool::new(false);
        let errors = Mutex::new(Vec::new());
        let (sender, events) = mpsc::channel::<Progress>();
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.clamp(1, self.seeds.max(1) as usize) {
                let sender = sender.clone();
                let (finished, finished_file) = (&finished, finished_file.as_deref());
                let (next_seed, failed, errors) = (&next_seed, &failed, &errors);
                scope.spawn(move || {
                    let mut report = |progress| {
                        // The receiver lives until every worker has ended.
                        let _ = sender.send(progress);
                    };
                    loop {
                        let seed = next_seed.fetch_add(1, Ordering::SeqCst);
                        if seed >= self.seeds || failed.load(Ordering::SeqCst) {
                            break;
                        }
                        let outcome = self.run_seed(
                            seed,
                            base,
                            (per_seed, cell),
                            (finished, finished_file),
                            failed,
                            &mut report,
                        );
                        if let Err(error) = outcome {
                            failed.store(true, Ordering::SeqCst);
                            lock(errors).push((seed, error));
                            break;
                        }
                    }
                });
            }
            drop(sender);
            for progress in events {
                on_progress(progress);
            }
        });
        let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
        errors.sort_by_key(|(seed, _)| *seed);
        if let Some((_, error)) = errors.into_iter().next() {
            return Err(error);
        }
        let mut done = finished
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .done;
        done.sort_by_key(|(index, _)| *index);
        Ok(done.into_iter().map(|(_, result)| result).collect())
    }

    /// Every cell of one seed, in order (η, then method).
    fn run_seed<R: GridResult, S>(
        &self,
        seed: u64,
        base: &PreferenceSet,
        (per_seed, cell): (&SeedSetup<'_, S>, &CellRunner<'_, S, R>),
        (finished, finished_file): (&Mutex<Finished<R>>, Option<&Path>),
        failed: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<(), TrainError> {
        let total = self.methods.len() * self.noise.len() * self.seeds as usize;
        let per_noise = self.methods.len();
        let shared = per_seed(seed)?;
        for (noise_index, &noise) in self.noise.iter().enumerate() {
            let flips = self
                .labels
                .flips(base.pairs.len(), noise, self.streams.noise(seed))?;
            let set = base.with_flips(flips);
            for (method_index, method) in self.methods.iter().enumerate() {
                if failed.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let index =
                    (seed as usize * self.noise.len() + noise_index) * per_noise + method_index;
                // Claimed and counted as done under one lock, so that a `finished.jsonl` written
                // meanwhile by another worker never leaves it out.
                let earlier = {
                    let mut finished = lock(finished);
                    let key = (method.name.as_str(), noise, seed);
                    let position = finished.earlier.iter().position(|r| r.key() == key);
                    position.map(|p| {
                        let result = finished.earlier.remove(p);
                        finished.done.push((index, result.clone()));
                        result
                    })
                };
                let result = match earlier {
                    Some(result) => result,
                    None => {
                        on_progress(Progress::RunStarted {
                            index,
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
                        self.keep(finished, finished_file, (index, &result), store)?;
                        result
                    }
                };
                if let Some(event) = result.finished_event() {
                    on_progress(event);
                }
            }
        }
        Ok(())
    }

    /// Adds a newly trained run to the results and, under the same lock (a run added after
    /// the file is written would be missing from it), to `finished.jsonl` (every run finished
    /// so far, in grid order), and removes the run's own state folder, which it no longer
    /// needs.
    fn keep<R: GridResult>(
        &self,
        finished: &Mutex<Finished<R>>,
        finished_file: Option<&Path>,
        (index, result): (usize, &R),
        store: Option<PathBuf>,
    ) -> Result<(), TrainError> {
        let mut finished = lock(finished);
        finished.done.push((index, result.clone()));
        let (Some(path), Some(dir)) = (finished_file, store) else {
            return Ok(());
        };
        let mut kept: Vec<(usize, &R)> = finished.done.iter().map(|(i, r)| (*i, r)).collect();
        kept.sort_by_key(|(i, _)| *i);
        let runs: Vec<R> = kept
            .into_iter()
            .map(|(_, r)| r.clone())
            .chain(finished.earlier.iter().cloned())
            .collect();
        save_finished(path, &runs)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(TrainError::io(&dir))?;
        }
        Ok(())
    }
}

/// The guarded value; a worker that panicked while holding the lock leaves it usable (its
/// panic is re-raised when the scope ends).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Done {
        method: String,
        seed: u64,
    }

    impl GridResult for Done {
        fn key(&self) -> (&str, f64, u64) {
            (&self.method, 0.0, self.seed)
        }
    }

    #[test]
    fn a_kept_run_stays_in_finished_jsonl_whoever_writes_the_file_next() {
        let dir = std::env::temp_dir().join(format!("ropo-grid-keep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let grid = Grid {
            methods: &[],
            noise: &[],
            labels: &LabelNoise::Symmetric,
            seeds: 2,
            streams: Seeds { base: 0 },
            store: Some(&dir),
            jobs: 2,
        };
        let finished = Mutex::new(Finished {
            earlier: Vec::new(),
            done: Vec::new(),
        });
        let file = dir.join("finished.jsonl");
        // Two workers' runs kept one after the other, later grid position first: each write
        // must hold every run kept before it.
        for (index, seed) in [(1, 1), (0, 0)] {
            let run_dir = dir.join(format!("run-{seed}"));
            std::fs::create_dir_all(&run_dir).unwrap();
            let done = Done {
                method: "dpo".into(),
                seed,
            };
            grid.keep(
                &finished,
                Some(&file),
                (index, &done),
                Some(run_dir.clone()),
            )
            .unwrap();
            assert!(!run_dir.exists(), "a kept run's state folder is removed");
        }
        let kept: Vec<Done> = load_finished(&file).unwrap();
        let seeds: Vec<u64> = kept.iter().map(|done| done.seed).collect();
        assert_eq!(seeds, [0, 1], "every kept run, in grid order");
        assert_eq!(lock(&finished).done.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
