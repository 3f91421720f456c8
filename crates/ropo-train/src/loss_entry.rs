//! A loss as a config lists it: a name (`"ropo"`, with the `[preference]` parameters) or a
//! table of one loss and its own parameters (`{ropo = {alpha = 6}}`), which override the
//! stage's for that loss alone, so one grid can hold ROPO at several α.

use std::collections::BTreeMap;

use ropo_core::{LossConfig, LossSpec};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};

use crate::TrainError;

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
    /// One loss name mapped to the parameters it sets itself (the rest come from the stage).
    Tuned(BTreeMap<String, LossSpec>),
}

impl<'de> Deserialize<'de> for LossEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Tuned(BTreeMap<String, LossSpec>),
        }
        let entry = match Raw::deserialize(deserializer) {
            Ok(Raw::Name(name)) => LossEntry::Name(name),
            Ok(Raw::Tuned(table)) if table.len() == 1 => LossEntry::Tuned(table),
            _ => {
                return Err(D::Error::custom(format!(
                    "a loss is a name (\"ropo\") or a table of one loss and its parameters \
                     ({{ropo = {{alpha = 6}}}}; parameters: {})",
                    LossSpec::FIELDS.join(", ")
                )))
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
                .map(|(name, own)| format!("{name}{{{}}}", own.describe().join(",")))
                .collect(),
        }
    }

    /// The loss name (without a data step's suffix) and the parameters the entry sets itself
    /// (none for a bare name).
    pub fn parts(&self) -> Result<(&str, LossSpec), TrainError> {
        let (name, own) = match self {
            Self::Name(name) => (name.as_str(), LossSpec::default()),
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

    /// The loss this entry names, with the parameters it sets itself over `stage`'s.
    pub fn loss(&self, stage: &LossSpec) -> Result<LossConfig, TrainError> {
        let (name, own) = self.parts()?;
        Ok(own.or(stage).config(name)?)
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
        assert_eq!(listed.losses[0].parts().unwrap().1, LossSpec::default());
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
