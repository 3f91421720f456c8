//! `cargo xtask score` and `cargo xtask generate`: a checkpoint and its tokenizer from the
//! command line.

use std::path::{Path, PathBuf};

use clap::Args;
use ropo::backend::Selected;
use ropo::data::{load_tokenizer, Tokenizer};
use ropo::models::{checkpoint, generate, score, CausalLm, SamplingConfig, ScoreRow};
use serde::Serialize;

use crate::CmdResult;

/// Which model and tokenizer to open.
#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face checkpoint folder or Hub id (`org/name[@revision]`), a `.safetensors`
    /// file, or a llama2.c `.bin` file.
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer file, folder or Hub id (default: looked for beside the model).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

/// Score a response given a prompt.
#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text (conditioning; BOS is prepended when the tokenizer has one).
    #[arg(long)]
    prompt: String,
    /// Response text whose tokens are scored (tokenized separately from the prompt).
    #[arg(long)]
    response: String,
}

/// Continue a prompt.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text (BOS is prepended when the tokenizer has one).
    #[arg(long, default_value = "")]
    prompt: String,
    /// The most new tokens.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability.
    #[arg(long)]
    top_p: Option<f64>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Serialize)]
struct ScoreReport {
    logp_sum: f64,
    logp_mean: f64,
    n_tokens: usize,
}

/// Prints `{"logp_sum", "logp_mean", "n_tokens"}` of the response.
pub fn run_score(args: &ScoreArgs) -> CmdResult {
    let (model, tokenizer) = open(&args.model)?;
    let prompt = prompt_ids(tokenizer.as_ref(), &args.prompt)?;
    let response = tokenizer.encode(&args.response)?;
    let row = ScoreRow {
        prompt: &prompt,
        response: &response,
    };
    let scores = score(&model, &[row], &Default::default())?;
    let first = |t: burn::tensor::Tensor<Selected, 1>| {
        t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
    };
    let report = ScoreReport {
        logp_sum: first(scores.sum),
        logp_mean: first(scores.mean),
        n_tokens: response.len(),
    };
    if !report.logp_sum.is_finite() {
        let place = format!("{}: the response's log-prob", args.model.model.display());
        return Err(ropo::models::ModelError::NonFinite(place).into());
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Prints the prompt's continuation as text.
pub fn run_generate(args: &GenerateArgs) -> CmdResult {
    let (model, tokenizer) = open(&args.model)?;
    let prompt = prompt_ids(tokenizer.as_ref(), &args.prompt)?;
    let sampling = SamplingConfig {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_tokens: tokenizer.eos_id().into_iter().collect(),
    };
    let new = generate(
        &model,
        std::slice::from_ref(&prompt),
        &sampling,
        &Default::default(),
    )?;
    let mut ids = prompt;
    ids.extend(&new[0]);
    println!("{}", tokenizer.decode(&ids)?);
    Ok(())
}

/// A model with the tokenizer that belongs to it.
type Opened = (CausalLm<Selected>, Box<dyn Tokenizer>);

fn open(args: &ModelArgs) -> Result<Opened, Box<dyn std::error::Error>> {
    let mut model_path = args.model.clone();
    crate::hub_paths::fetch_model(&mut model_path, false)?;
    let model = checkpoint::load(&model_path, &Default::default())?;
    let beside = if model_path.is_dir() {
        model_path.clone()
    } else {
        model_path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let mut tokenizer_path = args.tokenizer.clone().unwrap_or(beside);
    crate::hub_paths::fetch_model(&mut tokenizer_path, false)?;
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    if tokenizer.vocab_size() > model.vocab_size() {
        return Err(format!(
            "{}: tokenizer has {} tokens but the model {} only {}: they do not belong together",
            tokenizer_path.display(),
            tokenizer.vocab_size(),
            model_path.display(),
            model.vocab_size()
        )
        .into());
    }
    Ok((model, tokenizer))
}

/// BOS (when the tokenizer has one) followed by the prompt's tokens.
fn prompt_ids(
    tokenizer: &dyn Tokenizer,
    prompt: &str,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let mut ids: Vec<u32> = tokenizer.bos_id().into_iter().collect();
    ids.extend(tokenizer.encode(prompt)?);
    if ids.is_empty() {
        return Err("the prompt is empty and the tokenizer has no BOS token to start from".into());
    }
    Ok(ids)
}
