//! TRL's option names on `cargo xtask train --model M --data D`: those that mean what a ropo
//! flag means are aliases of it (the same run), and those ropo has no equivalent for are one
//! line saying what ropo offers instead.

mod common;

use common::{ok, scratch};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn xtask(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

/// `train --quiet` with `args`, `{M}`, `{D}` and `{OUT}` standing for the tiny Llama, the
/// folder of `data` and `out`; `-` in a flag's name becomes `sep`.
fn spelt(args: &str, sep: &str, data: &Path, out: &Path) -> Vec<String> {
    let model = fixtures().join("tiny_llama");
    ["train", "--quiet"]
        .into_iter()
        .map(String::from)
        .chain(args.split_whitespace().map(|arg| match arg {
            "{M}" => model.display().to_string(),
            "{D}" => data.display().to_string(),
            "{OUT}" => out.display().to_string(),
            flag if flag.starts_with("--") => format!("--{}", flag[2..].replace('-', sep)),
            value => value.to_string(),
        }))
        .collect()
}

#[test]
fn trl_spellings_write_the_same_config_as_ropos_own_flags() {
    let dir = scratch("trl-aliases");
    let data = dir.join("pairs");
    std::fs::create_dir_all(&data).unwrap();
    for split in ["train", "test"] {
        std::fs::copy(
            fixtures().join("tiny_pairs.jsonl"),
            data.join(format!("{split}.jsonl")),
        )
        .unwrap();
    }
    let common = "--template plain --max-length 32 --max-prompt-length 16 --seed 3 \
                  --weight-decay 0.01 --lora-alpha 4 --lora-dropout 0 --gradient-checkpointing";
    let ropo = format!(
        "{common} --model {{M}} --data {{D}} --split train --eval-data {{D}} \
         --eval-data-split test --batch 4 --grad-accum 2 --epochs 2 --steps 2 --lr 1e-3 \
         --warmup 1 --loss cdpo --epsilon 0.2 --gamma 0.7 --nll-weight 0.5 --eval-every 1 \
         --save-every 1 --lora-rank 2 --lora-targets q,v --peer-timeout 30 --out {{OUT}}"
    );
    // TRL's per-device batch 2 with 2 accumulation steps is ropo's batch of 4 in 2 forwards;
    // its test split is a split of dataset_name.
    let trl = format!(
        "{common} --model-name-or-path {{M}} --dataset-name {{D}} --dataset-train-split train \
         --dataset-test-split test --per-device-train-batch-size 2 \
         --gradient-accumulation-steps 2 --num-train-epochs 2 --max-steps 2 \
         --learning-rate 1e-3 --warmup-steps 1 --loss-type cdpo --label-smoothing 0.2 \
         --simpo-gamma 0.7 --rpo-alpha 0.5 --eval-steps 1 --save-steps 1 --lora-r 2 \
         --lora-target-modules q_proj v_proj --ddp-timeout 30 --output-dir {{OUT}}"
    );
    let run = |args: &str, sep: &str, name: &str| {
        let out = dir.join(name);
        let output = xtask(&spelt(args, sep, &data, &out));
        ok(&output);
        std::fs::read_to_string(out.join("config.toml")).unwrap()
    };
    let ours = run(&ropo, "-", "ropo");
    assert!(ours.contains("eval_data_split = \"test\""), "{ours}");
    for (sep, name) in [("_", "trl-underscores"), ("-", "trl-dashes")] {
        assert_eq!(run(&trl, sep, name), ours, "TRL's names with {sep:?}");
    }
}

#[test]
fn trl_options_ropo_lacks_are_one_line_errors_saying_what_it_offers() {
    let out = scratch("trl-refused").join("run");
    let base = "--model {M} --data {D} --template plain --max-length 32 --out {OUT}";
    let data = fixtures().join("tiny_pairs.jsonl");
    for (extra, expected) in [
        (
            "--fp16",
            "error: --fp16 is TRL's and ropo has no such option: --dtype bf16",
        ),
        ("--tf32", "--save-dtype bf16"),
        ("--logging_steps 10", "every step to metrics.jsonl"),
        ("--logging-steps=10", "error: --logging-steps is TRL's"),
        ("--report_to wandb", "no wandb"),
        ("--report-to=none", "report.md"),
        ("--push_to_hub", "huggingface-cli upload"),
        ("--push-to-hub --hub_model_id me/m", "OUT/model/"),
        ("--warmup_ratio 0.1", "--warmup N"),
        ("--lr_scheduler_type linear", "cosine decay to 0"),
        ("--use_peft --lora_r 8", "--lora-rank"),
        ("--save_total_limit 1", "keep_checkpoints"),
        ("--eval_strategy steps", "--eval-every"),
        // TRL's sigmoid loss with label smoothing is cDPO; ropo's sigmoid has no ε.
        ("--loss_type sigmoid --label_smoothing 0.1", "--loss cdpo"),
        ("--label_smoothing 0.1", "--loss ropo does not use it"),
        // A robust loss's own parameter with another loss.
        ("--drdpo-beta-prime 0.5", "--loss drdpo's, and --loss ropo"),
        (
            "--loss dpo --holder_gamma 3",
            "--loss holder's, and --loss dpo",
        ),
    ] {
        let args: Vec<String> = spelt(base, "-", &data, &out)
            .into_iter()
            .chain(extra.split_whitespace().map(String::from))
            .collect();
        let output = xtask(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra} was accepted");
        assert!(stderr.contains(expected), "{extra}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{extra}: {stderr}");
        assert!(stderr.starts_with("error: "), "{extra}: {stderr}");
        assert!(!out.exists(), "{extra} started a run");
    }
}
