//! The values of the flags that choose among ropo-train's options, with clap's names for them.

use clap::ValueEnum;
use ropo::train::{
    framework::{RoundSchedule, Scorer},
    label_noise::NoiseModel,
};

/// How labels are flipped (`--noise-model`), as ropo-train's [`NoiseModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NoiseModelChoice {
    /// Each label flipped with probability η.
    #[value(name = "symmetric")]
    Symmetric,
    /// A Bradley–Terry judge of the gold reward, wrong on a share η of the labels.
    #[value(name = "bradley_terry")]
    BradleyTerry,
    /// A judge who prefers the longer response, wrong on a share η of the labels.
    #[value(name = "length_judge")]
    LengthJudge,
}

impl From<NoiseModelChoice> for NoiseModel {
    fn from(choice: NoiseModelChoice) -> Self {
        match choice {
            NoiseModelChoice::Symmetric => Self::Symmetric,
            NoiseModelChoice::BradleyTerry => Self::BradleyTerry,
            NoiseModelChoice::LengthJudge => Self::LengthJudge,
        }
    }
}

/// How rejection sampling ranks candidates (`--scorer`), as ropo-train's [`Scorer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScorerChoice {
    /// The implicit reward.
    #[value(name = "implicit_reward")]
    ImplicitReward,
    /// The implicit reward per response token.
    #[value(name = "implicit_reward_per_token")]
    ImplicitRewardPerToken,
    /// The policy's own log-probability.
    #[value(name = "policy_log_prob")]
    PolicyLogProb,
    /// The policy's log-probability per response token.
    #[value(name = "policy_log_prob_per_token")]
    PolicyLogProbPerToken,
}

impl From<ScorerChoice> for Scorer {
    fn from(choice: ScorerChoice) -> Self {
        match choice {
            ScorerChoice::ImplicitReward => Self::ImplicitReward,
            ScorerChoice::ImplicitRewardPerToken => Self::ImplicitRewardPerToken,
            ScorerChoice::PolicyLogProb => Self::PolicyLogProb,
            ScorerChoice::PolicyLogProbPerToken => Self::PolicyLogProbPerToken,
        }
    }
}

/// How the learning rate runs over rounds (`--round-schedule`), as ropo-train's
/// [`RoundSchedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoundScheduleChoice {
    /// Each round its own warmup and decay.
    Restart,
    /// One warmup and decay over all rounds.
    Continuous,
}

impl From<RoundScheduleChoice> for RoundSchedule {
    fn from(choice: RoundScheduleChoice) -> Self {
        match choice {
            RoundScheduleChoice::Restart => Self::Restart,
            RoundScheduleChoice::Continuous => Self::Continuous,
        }
    }
}

/// The ROPO framework's choices both the trainer and the experiments take, each over its
/// config's field.
#[derive(clap::Args, Default)]
pub struct FrameworkFlags {
    /// How rejection sampling (`+filter+rs` methods) ranks candidates (overrides the config;
    /// default `policy_log_prob_per_token`; `implicit_reward` is the paper's form).
    #[arg(long, value_enum)]
    pub scorer: Option<ScorerChoice>,
    /// How the learning rate runs over the ROPO framework's rounds: `restart` (each round its
    /// own warmup and cosine decay; the default) or `continuous` (one schedule over all rounds).
    #[arg(long, value_enum)]
    pub round_schedule: Option<RoundScheduleChoice>,
}
