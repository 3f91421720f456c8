//! Every loss hyper-parameter, declared once: its published default ([`LossParams`]), its TOML
//! key and its command-line flag ([`LossSpec`]), and which losses use it. A new parameter is a
//! field here and its use in [`Loss::from_name`].

use std::fmt;

use serde::{
    de::{Error as _, MapAccess, Visitor},
    Deserialize, Deserializer, Serialize,
};

use crate::{
    loss::{shortened, IpoMargin, Loss, LossConfig, RePoBase},
    CoreError,
};

/// The loss-specific hyper-parameters with the published defaults; [`Loss::from_name`] takes
/// from it the ones its loss uses. β and the NLL weight, shared by every loss, are
/// [`LossConfig`]'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParams {
    /// ROPO's α (default 14).
    pub alpha: f64,
    /// cDPO's and rDPO's flip rate ε (default 0.1).
    pub epsilon: f64,
    /// SimPO's target margin γ (default 0.5, TRL's).
    pub gamma: f64,
    /// IPO's margin mode (default averaged).
    pub ipo_margin: IpoMargin,
    /// Dr. DPO's β′ (default 1.0, the paper's and its code's).
    pub drdpo_beta_prime: f64,
    /// Hölder-DPO's γ (default 2.0, the paper's).
    pub holder_gamma: f64,
    /// The loss RE-PO wraps (default DPO's).
    pub repo_base: RePoForm,
    /// RE-PO's starting reliability η₀ (default 0.9, the paper's).
    pub repo_eta0: f64,
    /// RE-PO's moving-average step α (default 0.1, the paper's).
    pub repo_momentum: f64,
}

impl Default for LossParams {
    fn default() -> Self {
        Self {
            alpha: 14.0,
            epsilon: 0.1,
            gamma: 0.5,
            ipo_margin: IpoMargin::Averaged,
            drdpo_beta_prime: 1.0,
            holder_gamma: 2.0,
            repo_base: RePoForm::Sigmoid,
            repo_eta0: 0.9,
            repo_momentum: 0.1,
        }
    }
}

/// β when nothing sets it (TRL's default).
pub const DEFAULT_BETA: f64 = 0.1;

/// The loss RE-PO wraps, as a config or a flag names it; [`RePoBase`] adds SimPO's γ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum RePoForm {
    /// DPO.
    #[cfg_attr(feature = "clap", value(alias = "dpo"))]
    Sigmoid,
    /// IPO (its per-token averaged margin).
    Ipo,
    /// SimPO (with the configured γ).
    Simpo,
}

impl Loss {
    /// Every loss name [`Loss::from_name`] accepts (`dpo` is also accepted for `sigmoid`).
    pub const NAMES: [&'static str; 11] = [
        "sigmoid", "ropo", "na", "cdpo", "rdpo", "ipo", "hinge", "simpo", "drdpo", "holder", "repo",
    ];

    /// The loss called `name`, with its hyper-parameters taken from `params`.
    pub fn from_name(name: &str, params: &LossParams) -> Result<Self, CoreError> {
        Ok(match name {
            "sigmoid" | "dpo" => Self::Sigmoid,
            "ropo" => Self::Ropo {
                alpha: params.alpha,
            },
            "na" => Self::NoiseAware,
            "cdpo" => Self::Cdpo {
                epsilon: params.epsilon,
            },
            "rdpo" => Self::Rdpo {
                epsilon: params.epsilon,
            },
            "ipo" => Self::Ipo {
                margin: params.ipo_margin,
            },
            "hinge" => Self::Hinge,
            "simpo" => Self::Simpo {
                gamma: params.gamma,
            },
            "drdpo" => Self::DrDpo {
                beta_prime: params.drdpo_beta_prime,
            },
            "holder" => Self::Holder {
                gamma: params.holder_gamma,
            },
            "repo" => Self::RePo {
                base: match params.repo_base {
                    RePoForm::Sigmoid => RePoBase::Sigmoid,
                    RePoForm::Ipo => RePoBase::Ipo,
                    RePoForm::Simpo => RePoBase::Simpo {
                        gamma: params.gamma,
                    },
                },
                eta: params.repo_eta0,
                momentum: params.repo_momentum,
            },
            other => return Err(CoreError::UnknownLoss(shortened(other))),
        })
    }
}

/// The loss hyper-parameters one source sets — a config table, a command line, one entry of an
/// experiment's grid — each left out (`None`) taking the value of the source beneath it
/// ([`LossSpec::or`]) and at the bottom the published default ([`LossParams`], β
/// [`DEFAULT_BETA`], no NLL term).
///
/// In TOML its keys sit in the table that holds it (`beta = 0.1`, `alpha = 6`; serde's
/// `flatten`) or form a table of their own (`{ropo = {alpha = 6}}`); a wrongly typed value is
/// named (`alpha: invalid type: …`), an unknown key refused. On the command line each is a flag
/// (`--alpha 6`, with TRL's names as aliases: `--label_smoothing`, `--rpo_alpha`, …).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct LossSpec {
    /// β, the inverse temperature of every loss (default 0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub beta: Option<f64>,
    /// ROPO's α (default 14).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub alpha: Option<f64>,
    /// cDPO's and rDPO's flip rate ε, TRL's label_smoothing (default 0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, aliases = ["label_smoothing", "label-smoothing"]))]
    pub epsilon: Option<f64>,
    /// SimPO's target margin γ (default 0.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, aliases = ["simpo_gamma", "simpo-gamma"]))]
    pub gamma: Option<f64>,
    /// IPO's margin: averaged per token (the default, as TRL) or summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_enum, alias = "ipo_margin"))]
    pub ipo_margin: Option<IpoMargin>,
    /// Weight of an NLL term on the chosen responses, TRL's rpo_alpha (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, aliases = ["nll_weight", "rpo_alpha", "rpo-alpha"]))]
    pub nll_weight: Option<f64>,
    /// Dr. DPO's β′ (default 1.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, alias = "drdpo_beta_prime"))]
    pub drdpo_beta_prime: Option<f64>,
    /// Hölder-DPO's γ (default 2.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, alias = "holder_gamma"))]
    pub holder_gamma: Option<f64>,
    /// The loss RE-PO wraps: sigmoid (or dpo; the default), ipo or simpo.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_enum, alias = "repo_base"))]
    pub repo_base: Option<RePoForm>,
    /// RE-PO's starting reliability η₀, in (0.5, 1] (default 0.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, alias = "repo_eta0"))]
    pub repo_eta0: Option<f64>,
    /// RE-PO's moving-average step α, in (0, 1] (default 0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, alias = "repo_momentum"))]
    pub repo_momentum: Option<f64>,
}

/// A parameter set for a loss that ignores it ([`LossSpec::unused_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnusedParameter {
    /// The parameter's key (`epsilon`).
    pub name: &'static str,
    /// The losses that use it (`["cdpo", "rdpo"]`).
    pub users: &'static [&'static str],
}

impl LossSpec {
    /// Every key, in the order they are written.
    pub const FIELDS: &'static [&'static str] = &[
        "beta",
        "alpha",
        "epsilon",
        "gamma",
        "ipo_margin",
        "nll_weight",
        "drdpo_beta_prime",
        "holder_gamma",
        "repo_base",
        "repo_eta0",
        "repo_momentum",
    ];

    /// These settings, each left out taken from `under`.
    pub fn or(&self, under: &LossSpec) -> LossSpec {
        LossSpec {
            beta: self.beta.or(under.beta),
            alpha: self.alpha.or(under.alpha),
            epsilon: self.epsilon.or(under.epsilon),
            gamma: self.gamma.or(under.gamma),
            ipo_margin: self.ipo_margin.or(under.ipo_margin),
            nll_weight: self.nll_weight.or(under.nll_weight),
            drdpo_beta_prime: self.drdpo_beta_prime.or(under.drdpo_beta_prime),
            holder_gamma: self.holder_gamma.or(under.holder_gamma),
            repo_base: self.repo_base.or(under.repo_base),
            repo_eta0: self.repo_eta0.or(under.repo_eta0),
            repo_momentum: self.repo_momentum.or(under.repo_momentum),
        }
    }

    /// The loss-specific parameters, the published default for each left out.
    pub fn params(&self) -> LossParams {
        let defaults = LossParams::default();
        LossParams {
            alpha: self.alpha.unwrap_or(defaults.alpha),
            epsilon: self.epsilon.unwrap_or(defaults.epsilon),
            gamma: self.gamma.unwrap_or(defaults.gamma),
            ipo_margin: self.ipo_margin.unwrap_or(defaults.ipo_margin),
            drdpo_beta_prime: self.drdpo_beta_prime.unwrap_or(defaults.drdpo_beta_prime),
            holder_gamma: self.holder_gamma.unwrap_or(defaults.holder_gamma),
            repo_base: self.repo_base.unwrap_or(defaults.repo_base),
            repo_eta0: self.repo_eta0.unwrap_or(defaults.repo_eta0),
            repo_momentum: self.repo_momentum.unwrap_or(defaults.repo_momentum),
        }
    }

    /// The loss called `name` with these parameters, β and NLL weight, checked.
    pub fn config(&self, name: &str) -> Result<LossConfig, CoreError> {
        let config = LossConfig::new(
            Loss::from_name(name, &self.params())?,
            self.beta.unwrap_or(DEFAULT_BETA),
        )?;
        match self.nll_weight {
            Some(weight) => config.with_nll_weight(weight),
            None => Ok(config),
        }
    }

    /// The first parameter set here that the loss called `name` does not use, among those a
    /// command line may only set for their own losses: ε (TRL's `label_smoothing`, which TRL's
    /// sigmoid loss reads and ropo's DPO does not) and the robust losses' own parameters. β,
    /// α, γ, the IPO margin and the NLL weight go with any loss, as settings shared by a grid.
    pub fn unused_by(&self, name: &str) -> Option<UnusedParameter> {
        let own = [
            ("epsilon", self.epsilon.is_some(), &["cdpo", "rdpo"][..]),
            (
                "drdpo_beta_prime",
                self.drdpo_beta_prime.is_some(),
                &["drdpo"],
            ),
            ("holder_gamma", self.holder_gamma.is_some(), &["holder"]),
            ("repo_base", self.repo_base.is_some(), &["repo"]),
            ("repo_eta0", self.repo_eta0.is_some(), &["repo"]),
            ("repo_momentum", self.repo_momentum.is_some(), &["repo"]),
        ];
        own.into_iter()
            .find(|(_, given, users)| *given && !users.contains(&name))
            .map(|(name, _, users)| UnusedParameter { name, users })
    }

    /// The parameters set here as `key=value`, for the name of a tuned grid entry
    /// (`ropo{alpha=6}`): the numbers in key order, then the named choices.
    pub fn describe(&self) -> Vec<String> {
        let numbers = [
            ("beta", self.beta),
            ("alpha", self.alpha),
            ("epsilon", self.epsilon),
            ("gamma", self.gamma),
            ("nll_weight", self.nll_weight),
            ("drdpo_beta_prime", self.drdpo_beta_prime),
            ("holder_gamma", self.holder_gamma),
            ("repo_eta0", self.repo_eta0),
            ("repo_momentum", self.repo_momentum),
        ];
        let choices = [
            ("ipo_margin", self.ipo_margin.map(|m| format!("{m:?}"))),
            ("repo_base", self.repo_base.map(|b| format!("{b:?}"))),
        ];
        numbers
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| format!("{key}={v}")))
            .chain(
                choices.into_iter().filter_map(|(key, value)| {
                    value.map(|v| format!("{key}={}", v.to_lowercase()))
                }),
            )
            .collect()
    }
}

impl<'de> Deserialize<'de> for LossSpec {
    /// Reads the keys of [`LossSpec::FIELDS`]; a value of the wrong type is an error that names
    /// its key (which serde's `flatten` would otherwise lose), an unknown key is refused.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("LossSpec", LossSpec::FIELDS, SpecVisitor)
    }
}

struct SpecVisitor;

impl<'de> Visitor<'de> for SpecVisitor {
    type Value = LossSpec;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("loss parameters")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LossSpec, A::Error> {
        let mut spec = LossSpec::default();
        while let Some(key) = map.next_key::<String>()? {
            let named = |error: A::Error| A::Error::custom(format!("{key}: {error}"));
            match key.as_str() {
                "beta" => spec.beta = Some(map.next_value().map_err(named)?),
                "alpha" => spec.alpha = Some(map.next_value().map_err(named)?),
                "epsilon" => spec.epsilon = Some(map.next_value().map_err(named)?),
                "gamma" => spec.gamma = Some(map.next_value().map_err(named)?),
                "ipo_margin" => spec.ipo_margin = Some(map.next_value().map_err(named)?),
                "nll_weight" => spec.nll_weight = Some(map.next_value().map_err(named)?),
                "drdpo_beta_prime" => {
                    spec.drdpo_beta_prime = Some(map.next_value().map_err(named)?)
                }
                "holder_gamma" => spec.holder_gamma = Some(map.next_value().map_err(named)?),
                "repo_base" => spec.repo_base = Some(map.next_value().map_err(named)?),
                "repo_eta0" => spec.repo_eta0 = Some(map.next_value().map_err(named)?),
                "repo_momentum" => spec.repo_momentum = Some(map.next_value().map_err(named)?),
                other => return Err(A::Error::unknown_field(other, LossSpec::FIELDS)),
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_takes_what_it_leaves_out_from_the_one_beneath_and_then_the_defaults() {
        let file = LossSpec {
            beta: Some(0.2),
            alpha: Some(6.0),
            ..LossSpec::default()
        };
        let flags = LossSpec {
            alpha: Some(3.0),
            ..LossSpec::default()
        };
        let spec = flags.or(&file);
        assert_eq!((spec.beta, spec.alpha), (Some(0.2), Some(3.0)));
        let config = spec.config("ropo").unwrap();
        assert_eq!(
            (config.loss(), config.beta(), config.nll_weight()),
            (Loss::Ropo { alpha: 3.0 }, 0.2, 0.0)
        );
        let defaults = LossSpec::default().config("repo").unwrap();
        assert_eq!(
            (defaults.loss(), defaults.beta()),
            (
                Loss::RePo {
                    base: RePoBase::Sigmoid,
                    eta: 0.9,
                    momentum: 0.1
                },
                DEFAULT_BETA
            )
        );
    }

    #[test]
    fn re_po_around_simpo_takes_the_configured_gamma() {
        let spec = LossSpec {
            gamma: Some(1.5),
            repo_base: Some(RePoForm::Simpo),
            ..LossSpec::default()
        };
        assert_eq!(
            spec.config("repo").unwrap().loss(),
            Loss::RePo {
                base: RePoBase::Simpo { gamma: 1.5 },
                eta: 0.9,
                momentum: 0.1
            }
        );
    }

    #[test]
    fn a_robust_loss_parameter_its_loss_ignores_is_named_with_the_losses_that_use_it() {
        let spec = LossSpec {
            beta: Some(0.3),
            nll_weight: Some(1.0),
            epsilon: Some(0.2),
            ..LossSpec::default()
        };
        assert_eq!(spec.unused_by("cdpo"), None);
        assert_eq!(
            spec.unused_by("ropo"),
            Some(UnusedParameter {
                name: "epsilon",
                users: &["cdpo", "rdpo"]
            })
        );
        let shared = LossSpec {
            beta: Some(0.3),
            alpha: Some(6.0),
            gamma: Some(1.0),
            ipo_margin: Some(IpoMargin::Summed),
            nll_weight: Some(0.1),
            ..LossSpec::default()
        };
        assert!(Loss::NAMES
            .iter()
            .all(|name| shared.unused_by(name).is_none()));
    }

    #[test]
    fn every_key_reads_back_what_is_written_and_a_wrong_type_or_key_is_named() {
        let spec = LossSpec {
            beta: Some(0.2),
            alpha: Some(6.0),
            epsilon: Some(0.3),
            gamma: Some(1.5),
            ipo_margin: Some(IpoMargin::Summed),
            nll_weight: Some(0.5),
            drdpo_beta_prime: Some(0.7),
            holder_gamma: Some(3.0),
            repo_base: Some(RePoForm::Ipo),
            repo_eta0: Some(0.8),
            repo_momentum: Some(0.2),
        };
        let written = serde_json::to_string(&spec).unwrap();
        let places: Vec<usize> = LossSpec::FIELDS
            .iter()
            .map(|key| written.find(&format!("\"{key}\":")).unwrap())
            .collect();
        assert!(places.windows(2).all(|w| w[0] < w[1]), "{written}");
        assert_eq!(serde_json::from_str::<LossSpec>(&written).unwrap(), spec);
        assert_eq!(
            spec.describe().join(","),
            "beta=0.2,alpha=6,epsilon=0.3,gamma=1.5,nll_weight=0.5,drdpo_beta_prime=0.7,\
             holder_gamma=3,repo_eta0=0.8,repo_momentum=0.2,ipo_margin=summed,repo_base=ipo"
        );
        let wrong = serde_json::from_str::<LossSpec>(r#"{"alpha": "six"}"#).unwrap_err();
        assert!(
            wrong.to_string().starts_with("alpha: invalid type"),
            "{wrong}"
        );
        let unknown = serde_json::from_str::<LossSpec>(r#"{"alhpa": 6}"#).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `alhpa`"),
            "{unknown}"
        );
    }
}
