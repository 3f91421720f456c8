//! `ropo score` and `ropo generate`: a checkpoint (or a PEFT adapter over its
//! base) and its tokenizer from the command line, the prompt raw or through the model's chat
//! template.

use std::path::{Path, PathBuf};

use clap::Args;
use ropo::backend::Selected;
use ropo::data::template::{ChatFormat, Template};
use ropo::data::tokenize::tokenize_prompt;
use ropo::data::{load_tokenizer, DataError, Message, Prompt, Tokenizer};
use ropo::models::{checkpoint, generate, peft, score, CausalLm, SamplingConfig, ScoreRow};
use serde::Serialize;

use crate::CmdResult;

/// Which model and tokenizer to open.
#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face checkpoint folder or Hub id (`org/name[@revision]`), a `.safetensors`
    /// file, a llama2.c `.bin` file, a llama.cpp `.gguf` file (its tokenizer and chat template
    /// come from the same file), or a PEFT adapter folder (applied to the base its
    /// `adapter_config.json` names).
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer file, folder or Hub id (default: looked for beside the model, then beside an
    /// adapter's base).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

/// How `--prompt` becomes tokens.
#[derive(Args)]
pub struct PromptArgs {
    /// Render `--prompt` as one user message through the model's chat template (the tokenizer
    /// folder's, else ChatML, as `train --template auto`), with the generation prompt added.
    /// Without it the prompt is raw text. Either way BOS is put in front only where the text
    /// does not already start with it (and never by the model's own template).
    #[arg(long)]
    chat: bool,
}

/// Score a response given a prompt.
#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text (conditioning).
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    prompt_args: PromptArgs,
    /// Response text whose tokens are scored (tokenized separately from the prompt).
    #[arg(long)]
    response: String,
}

/// Continue a prompt.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt text.
    #[arg(long, default_value = "")]
    prompt: String,
    #[command(flatten)]
    prompt_args: PromptArgs,
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
    let opened = open(&args.model)?;
    let (model, tokenizer) = (&opened.model, opened.tokenizer.as_ref());
    let prompt = prompt_ids(&opened, &args.prompt, &args.prompt_args)?;
    let response = tokenizer.encode(&args.response)?;
    let row = ScoreRow {
        prompt: &prompt,
        response: &response,
    };
    let scores = score(model, &[row], &Default::default())?;
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
    let opened = open(&args.model)?;
    let (model, tokenizer) = (&opened.model, opened.tokenizer.as_ref());
    let prompt = prompt_ids(&opened, &args.prompt, &args.prompt_args)?;
    let sampling = SamplingConfig {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_tokens: tokenizer.eos_id().into_iter().collect(),
    };
    let new = generate(
        model,
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
struct Opened {
    model: CausalLm<Selected>,
    tokenizer: Box<dyn Tokenizer>,
    /// Where the tokenizer was read, where `--chat` looks for the chat template.
    tokenizer_path: PathBuf,
}

fn open(args: &ModelArgs) -> Result<Opened, Box<dyn std::error::Error>> {
    let mut model_path = args.model.clone();
    ropo::paths::fetch_model(&mut model_path, false)?;
    // Folders to look for the tokenizer in, nearest first; a GGUF file holds its own.
    let mut beside = vec![if model_path.is_dir() || checkpoint::is_gguf(&model_path) {
        model_path.clone()
    } else {
        model_path.parent().unwrap_or(Path::new(".")).to_path_buf()
    }];
    let model = if peft::is_adapter(&model_path) {
        let base = adapter_base(&model_path)?;
        let model = checkpoint::load(&base, &Default::default())?;
        beside.push(if base.is_dir() {
            base.clone()
        } else {
            base.parent().unwrap_or(Path::new(".")).to_path_buf()
        });
        peft::load_adapter(model, &model_path)?.merged()
    } else {
        checkpoint::load(&model_path, &Default::default())?
    };
    let (tokenizer_path, tokenizer) = match &args.tokenizer {
        Some(path) => {
            let mut path = path.clone();
            ropo::paths::fetch_model(&mut path, false)?;
            let tokenizer = load_tokenizer(&path)?;
            (path, tokenizer)
        }
        None => tokenizer_beside(beside)?,
    };
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
    Ok(Opened {
        model,
        tokenizer,
        tokenizer_path,
    })
}

/// The tokenizer of the first of `folders` that holds one (an adapter folder may not; its
/// base does), and where it was.
fn tokenizer_beside(
    folders: Vec<PathBuf>,
) -> Result<(PathBuf, Box<dyn Tokenizer>), Box<dyn std::error::Error>> {
    let last = folders.len() - 1;
    for (index, folder) in folders.into_iter().enumerate() {
        match load_tokenizer(&folder) {
            Ok(tokenizer) => return Ok((folder, tokenizer)),
            Err(DataError::NoTokenizer { .. }) if index < last => {}
            Err(error) => return Err(error.into()),
        }
    }
    unreachable!("the last folder returns")
}

/// The base of the PEFT adapter in `folder` (its `base_model_name_or_path`), a Hub id fetched
/// as `--model` is; an error naming that field when it names nothing there is.
fn adapter_base(folder: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let named = peft::base_of(folder)?;
    let field = format!(
        "{}: base_model_name_or_path {named:?}",
        folder.join(peft::CONFIG_FILE).display()
    );
    let mut base = PathBuf::from(&named);
    ropo::paths::fetch_model(&mut base, false).map_err(|e| format!("{field}: {e}"))?;
    if !base.exists() {
        return Err(format!(
            "{field}: no such file or folder, nor a Hub id; give the base model's path there"
        )
        .into());
    }
    Ok(base)
}

/// The prompt's token ids: the text raw, or with `--chat` as one user message through the
/// model's chat template; BOS as training puts it (`tokenize_prompt`): in front unless the
/// ids already start with it or the model's own template rendered them.
fn prompt_ids(
    opened: &Opened,
    prompt: &str,
    how: &PromptArgs,
) -> Result<Vec<u32>, Box<dyn std::error::Error>> {
    let (prompt, format) = if how.chat {
        let message = Message {
            role: "user".into(),
            content: prompt.into(),
        };
        let format = ChatFormat::resolve(Template::Auto, &opened.tokenizer_path)?;
        (Prompt::Messages(vec![message]), format)
    } else {
        (Prompt::Text(prompt.into()), Template::Plain.into())
    };
    let pieces = format
        .render_prompt(&prompt)
        .map_err(|problem| format!("{format}: {problem}"))?;
    let ids = tokenize_prompt(&pieces, opened.tokenizer.as_ref(), &format)?;
    if ids.is_empty() {
        return Err("the prompt is empty and the tokenizer has no BOS token to start from".into());
    }
    Ok(ids)
}
