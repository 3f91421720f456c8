//! Every random stream of an experiment, derived by name from the base seed (and, for the
//! streams that change from run to run, the run's seed index) in this one place. The
//! formulas are the ones ropo has always used, so results stay what they were.

/// The random streams of an experiment whose base seed is `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeds {
    /// The experiment's base seed (the `seed` of a gold config, `split_seed` of a dataset one).
    pub base: u64,
}

/// The streams of one evaluation set: its data and the samples drawn to judge a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalSeeds {
    /// The pairs.
    pub pairs: u64,
    /// The prompts.
    pub prompts: u64,
    /// The policy's samples on the prompts.
    pub samples: u64,
    /// The reference's baseline samples on the prompts.
    pub baseline: u64,
}

impl Seeds {
    /// Model initialisation (the backend's seed).
    pub fn init(self) -> u64 {
        self.base
    }

    /// The SFT examples of the gold task.
    pub fn sft_examples(self) -> u64 {
        self.base + 1
    }

    /// The order SFT visits its examples in.
    pub fn sft_order(self) -> u64 {
        self.base
    }

    /// The training pairs of the gold task.
    pub fn train_pairs(self) -> u64 {
        self.base + 2
    }

    /// The initial `A` factors of LoRA adapters.
    pub fn lora(self) -> u64 {
        self.base + 3
    }

    /// The train/held-out split of a dataset.
    pub fn split(self) -> u64 {
        self.base
    }

    /// The subset of a dataset's training pairs that a run shorter than an epoch trains on.
    pub fn subset(self) -> u64 {
        self.base + 6
    }

    /// The clean held-out set, with the samples of seed index `run`.
    pub fn held_out(self, run: u64) -> EvalSeeds {
        Self::eval(self.base + 3, 1000 + run)
    }

    /// The validation set, with the samples of seed index `run`.
    pub fn validation(self, run: u64) -> EvalSeeds {
        Self::eval(self.base + 5, 2000 + run)
    }

    /// The label noise of seed index `run`.
    pub fn noise(self, run: u64) -> u64 {
        7919 * run + 17
    }

    /// The batch order of seed index `run` in round `round` (0 for a one-round run).
    pub fn order(self, run: u64, round: usize) -> u64 {
        31 * run + 5 + round as u64
    }

    /// Rejection sampling after round `round` of seed index `run`.
    pub fn resampling(self, run: u64, round: usize) -> u64 {
        100 * run + round as u64
    }

    fn eval(data: u64, samples: u64) -> EvalSeeds {
        EvalSeeds {
            pairs: data,
            prompts: data + 1,
            samples,
            baseline: samples + 500,
        }
    }
}
