//! `ropo loss`: evaluate any preference loss from the command line.

use burn::tensor::{Tensor, TensorData};
use clap::Args;
use ropo::backend::Selected;
use ropo::core::{LossSpec, PairLogps};
use serde::Serialize;

use crate::CmdResult;

/// Evaluate a loss on margins `h`, or on the four per-sequence log-prob vectors.
#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub struct LossArgs {
    /// The loss: sigmoid (or dpo), ropo, na, cdpo, rdpo, ipo, hinge, simpo, drdpo, holder,
    /// repo.
    /// With --margins, drdpo gives each pair's DPO loss and gradient (its batch weights need
    /// the log-prob vectors: then `loss` holds the batch form whose mean is Dr. DPO's loss).
    #[arg(long)]
    loss: String,
    /// β and the loss's own parameters; the NLL weight needs the log-prob vectors.
    #[command(flatten)]
    params: LossSpec,
    /// Margins h, comma-separated (instead of the log-prob vectors).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["policy_chosen", "policy_rejected"])]
    margins: Option<Vec<f64>>,
    /// Summed policy log-probs of the chosen responses, comma-separated.
    #[arg(long, value_delimiter = ',', requires_all = ["policy_rejected", "reference_chosen", "reference_rejected"])]
    policy_chosen: Option<Vec<f64>>,
    /// Summed policy log-probs of the rejected responses.
    #[arg(long, value_delimiter = ',')]
    policy_rejected: Option<Vec<f64>>,
    /// Summed reference log-probs of the chosen responses.
    #[arg(long, value_delimiter = ',')]
    reference_chosen: Option<Vec<f64>>,
    /// Summed reference log-probs of the rejected responses.
    #[arg(long, value_delimiter = ',')]
    reference_rejected: Option<Vec<f64>>,
    /// Chosen response token counts (default 1 each).
    #[arg(long, value_delimiter = ',')]
    chosen_tokens: Option<Vec<f64>>,
    /// Rejected response token counts (default 1 each).
    #[arg(long, value_delimiter = ',')]
    rejected_tokens: Option<Vec<f64>>,
}

#[derive(Serialize)]
struct LossReport {
    loss: Vec<f64>,
    dloss_dh: Vec<f64>,
    margins: Vec<f64>,
}

/// Prints `{"loss": [...], "dloss_dh": [...], "margins": [...]}` for the given inputs.
pub fn run(args: &LossArgs) -> CmdResult {
    let config = args.params.config(&args.loss)?;
    let (losses, margins) = match &args.margins {
        Some(margins) => {
            if config.nll_weight() > 0.0 {
                return Err("--nll-weight needs the log-prob vectors, not --margins".into());
            }
            let margins = tensor(margins);
            (config.loss_of_margin(margins.clone()), margins)
        }
        None => {
            let output = config.forward(&pair_logps(args)?);
            (output.losses, output.margins)
        }
    };
    let report = LossReport {
        loss: values(losses),
        dloss_dh: values(config.dloss_dmargin(margins.clone())),
        margins: values(margins),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn pair_logps(args: &LossArgs) -> Result<PairLogps<Selected>, Box<dyn std::error::Error>> {
    let policy_chosen = args
        .policy_chosen
        .as_ref()
        .ok_or("give --margins, or --policy-chosen with the other three log-prob vectors")?;
    let batch = policy_chosen.len();
    let ones = vec![1.0; batch];
    let field = |name: &str, values: Option<&Vec<f64>>| match values {
        Some(values) if values.len() == batch => Ok(tensor(values)),
        Some(values) => Err(format!(
            "--{name} has {} values but --policy-chosen has {batch}",
            values.len()
        )),
        None => Err(format!("--{name} is missing")),
    };
    Ok(PairLogps {
        policy_chosen: tensor(policy_chosen),
        policy_rejected: field("policy-rejected", args.policy_rejected.as_ref())?,
        reference_chosen: field("reference-chosen", args.reference_chosen.as_ref())?,
        reference_rejected: field("reference-rejected", args.reference_rejected.as_ref())?,
        chosen_tokens: field(
            "chosen-tokens",
            Some(args.chosen_tokens.as_ref().unwrap_or(&ones)),
        )?,
        rejected_tokens: field(
            "rejected-tokens",
            Some(args.rejected_tokens.as_ref().unwrap_or(&ones)),
        )?,
    })
}

fn tensor(values: &[f64]) -> Tensor<Selected, 1> {
    Tensor::from_data(TensorData::from(values), &Default::default())
}

fn values(tensor: Tensor<Selected, 1>) -> Vec<f64> {
    tensor.into_data().iter::<f64>().collect()
}
