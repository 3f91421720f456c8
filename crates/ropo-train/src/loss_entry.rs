//! A loss as a config lists it: a name (`"ropo"`, with the `[preference]` parameters) or a
//! table of one loss and its own parameters (`{ropo = {alpha = 6}}`), which override the
//! stage's for that loss alone, so one grid can hold ROPO at several α.

use std::collections::BTreeMap;

use ropo_core::{IpoMargin, RePoBase};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};

use crate::TrainError;

/// How IPO forms its margin, as a config names it (`averaged` or `summed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpoForm {
    /// Per-token averaged log-ratios (TRL's choice).
    Averaged,
    /// Summed log-ratios, like every other loss's margin.
    Summed,
}

impl From<IpoForm> for IpoMargin {
    fn from(form: IpoForm) -> Self {
        match form {
            IpoForm::Averaged => Self::Averaged,
            IpoForm::Summed => Self::Summed,
        }
    }
}

/// The loss RE-PO wraps, as a config names it (`sigmoid`, `ipo` or `simpo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RePoForm {
    /// DPO.
    Sigmoid,
    /// IPO (its per-token averaged margin).
    Ipo,
    /// SimPO (with the stage's γ).
    Simpo,
}

impl RePoForm {
    /// ropo-core's base, SimPO's with target margin `gamma`.
    pub fn base(self, gamma: f64) -> RePoBase {
        match self {
            Self::Sigmoid => RePoBase::Sigmoid,
            Self::Ipo => RePoBase::Ipo,
            Self::Simpo => RePoBase::Simpo { gamma },
        }
    }
}

/// What a method does to its pairs between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataStep {
    /// Nothing: every round trains on every pair.
    None,
    /// Drop the fraction ρ of pairs with the highest loss.
    Filter,
    /// Drop them and add pairs resampled from the policy for the dropped prompts.
    FilterResample,
}

impl DataStep {
    /// A method name split into its loss name and the data step its suffix asks for:
    /// `ropo+filter` is ROPO with the filter, `ropo+filter+rs` adds rejection sampling.
    pub fn split(name: &str) -> (&str, Self) {
        [Self::FilterResample, Self::Filter]
            .into_iter()
            .find_map(|step| name.strip_suffix(step.suffix()).map(|loss| (loss, step)))
            .unwrap_or((name, Self::None))
    }

    /// The suffix that names this step in a method name (empty for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Filter => "+filter",
            Self::FilterResample => "+filter+rs",
        }
    }
}

/// One entry of `losses`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LossEntry {
    /// A loss name with the stage's parameters.
    Name(String),
    /// One loss name mapped to its own parameters.
    Tuned(BTreeMap<String, LossOverrides>),
}

/// Parameters a [`LossEntry::Tuned`] sets for its loss; the rest come from the stage.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossOverrides {
    /// β.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// ROPO's α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// cDPO's and rDPO's ε.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// SimPO's γ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// IPO's margin form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipo_margin: Option<IpoForm>,
    /// Weight of an NLL term on the chosen responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll_weight: Option<f64>,
    /// Dr. DPO's β′.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drdpo_beta_prime: Option<f64>,
    /// Hölder-DPO's γ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_gamma: Option<f64>,
    /// The loss RE-PO wraps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_base: Option<RePoForm>,
    /// RE-PO's starting reliability η₀.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_eta0: Option<f64>,
    /// RE-PO's moving-average step α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_momentum: Option<f64>,
}

impl<'de> Deserialize<'de> for LossEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Tuned(BTreeMap<String, LossOverrides>),
        }
        let entry = match Raw::deserialize(deserializer) {
            Ok(Raw::Name(name)) => LossEntry::Name(name),
            Ok(Raw::Tuned(table)) if table.len() == 1 => LossEntry::Tuned(table),
            _ => {
                return Err(D::Error::custom(
                    "a loss is a name (\"ropo\") or a table of one loss and its parameters \
                     ({ropo = {alpha = 6}}; parameters: beta, alpha, epsilon, gamma, \
                     ipo_margin, nll_weight, drdpo_beta_prime, holder_gamma, repo_base, \
                     repo_eta0, repo_momentum)",
                ))
            }
        };
        Ok(entry)
    }
}

impl From<&str> for LossEntry {
    fn from(name: &str) -> Self {
        Self::Name(name.into())
    }
}

impl LossEntry {
    /// Its name in tables and run folders: the loss name, followed by its own parameters in
    /// braces when it has any (`ropo{alpha=6}`).
    pub fn name(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::Tuned(table) => table
                .iter()
                .map(|(name, o)| {
                    let set: Vec<String> = [
                        ("beta", o.beta),
                        ("alpha", o.alpha),
                        ("epsilon", o.epsilon),
                        ("gamma", o.gamma),
                        ("nll_weight", o.nll_weight),
                        ("drdpo_beta_prime", o.drdpo_beta_prime),
                        ("holder_gamma", o.holder_gamma),
                        ("repo_eta0", o.repo_eta0),
                        ("repo_momentum", o.repo_momentum),
                    ]
                    .into_iter()
                    .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
                    .chain(
                        o.ipo_margin
                            .map(|m| format!("ipo_margin={m:?}").to_lowercase()),
                    )
                    .chain(
                        o.repo_base
                            .map(|b| format!("repo_base={b:?}").to_lowercase()),
                    )
                    .collect();
                    format!("{name}{{{}}}", set.join(","))
                })
                .collect(),
        }
    }

    /// The loss name (without a data step's suffix) and the parameters the entry sets itself
    /// (none for a bare name).
    pub fn parts(&self) -> Result<(&str, LossOverrides), TrainError> {
        let (name, own) = match self {
            Self::Name(name) => (name.as_str(), LossOverrides::default()),
            Self::Tuned(table) => table
                .iter()
                .next()
                .map(|(name, own)| (name.as_str(), *own))
                .ok_or_else(|| {
                    TrainError::Config("losses: an empty loss table names no loss".into())
                })?,
        };
        let loss = DataStep::split(name).0;
        if loss.contains('+') {
            return Err(TrainError::Config(format!(
                "unknown method '{name}': a method is a loss name, optionally followed by {} or \
                 {} (ropo+filter)",
                DataStep::Filter.suffix(),
                DataStep::FilterResample.suffix()
            )));
        }
        Ok((loss, own))
    }

    /// The data step the entry's name asks for between rounds (`ropo+filter`).
    pub fn data_step(&self) -> DataStep {
        match self {
            Self::Name(name) => DataStep::split(name).1,
            Self::Tuned(table) => table
                .keys()
                .next()
                .map_or(DataStep::None, |name| DataStep::split(name).1),
        }
    }
}

/// The names of `entries`, in order (the grid's rows).
pub fn names(entries: &[LossEntry]) -> Vec<String> {
    entries.iter().map(LossEntry::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Listed {
        losses: Vec<LossEntry>,
    }

    #[test]
    fn names_and_tables_with_their_own_parameters_read_from_toml() {
        let text = r#"losses = ["dpo", {ropo = {alpha = 6}}, {simpo = {gamma = 1.5}}]"#;
        let listed: Listed = toml::from_str(text).unwrap();
        assert_eq!(
            names(&listed.losses),
            ["dpo", "ropo{alpha=6}", "simpo{gamma=1.5}"]
        );
        let (name, own) = listed.losses[1].parts().unwrap();
        assert_eq!((name, own.alpha, own.beta), ("ropo", Some(6.0), None));
        assert_eq!(
            listed.losses[0].parts().unwrap().1,
            LossOverrides::default()
        );
        let written = toml::to_string(&listed).unwrap();
        assert_eq!(toml::from_str::<Listed>(&written).unwrap(), listed);
    }

    #[test]
    fn a_table_of_two_losses_or_an_unknown_parameter_is_refused_saying_what_a_loss_is() {
        for text in [
            r#"losses = [{ropo = {alpha = 6}, dpo = {}}]"#,
            r#"losses = [{ropo = {alhpa = 6}}]"#,
            r#"losses = [3]"#,
        ] {
            let error = toml::from_str::<Listed>(text).unwrap_err().to_string();
            assert!(error.contains("a loss is a name"), "{text}: {error}");
        }
    }
}
