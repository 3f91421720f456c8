//! `--dtype bf16` (bf16 matrix products on the CPU's bf16 unit, everything else in f32) against
//! f32 on the real stories260K model and on a Llama fixture whose heads are 16 wide (so that
//! attention, forward and backward, runs on the unit too): the reference log-probs of a batch
//! of pairs, and the first DPO step's loss and gradient norm, agree within 1e-2 relative, and
//! the bf16 numbers are not f32's (the bf16 unit ran). Later steps are not compared: AdamW's first update is about
//! `lr · sign(gradient)` for every weight, so the sign of each tiny gradient component, which
//! bf16 rounding flips, moves the weights by the full learning rate. Its own test binary, as
//! the precision is process-wide.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use ropo::backend::Training;
use ropo::core::{Loss, LossConfig};
use ropo::data::TokenizedPair;
use ropo::models::{
    checkpoint,
    product::{bf16_matrix_units, set_matmul_precision, MatmulPrecision},
};
use ropo::train::{
    optim::Trainer, reference::reference_logps, schedule::LrSchedule, step::preference_step,
};

/// The models compared: stories260K (heads 8 wide, so attention stays f32) and the Llama 3
/// fixture (4 query heads of 16 over 2 kv heads, a context of 64).
fn models() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared/assets/models/stories260K.bin"),
        root.join("crates/ropo-models/tests/fixtures/llama3_rope_scaling"),
    ]
}

/// Four pairs of a 16-token prompt and 48-token responses over a vocabulary of `vocab`.
fn pairs(vocab: usize) -> Vec<TokenizedPair> {
    let ids = (vocab - 3).min(500);
    (0..4)
        .map(|row| {
            let token = |i: usize| ((i * 7 + row * 13) % ids) as u32 + 3;
            TokenizedPair {
                prompt: (0..16).map(token).collect(),
                chosen: (16..64).map(token).collect(),
                rejected: (16..64).map(|i| token(i * 3 + 1)).collect(),
            }
        })
        .collect()
}

/// The chosen and rejected log-prob sums of every pair at the start (the reference pass, at
/// `precision` as the trainer's is), then the first DPO step's loss (β 0.1) against them and
/// its gradient norm.
fn run(precision: MatmulPrecision, path: &Path) -> (Vec<f64>, [f64; 2]) {
    set_matmul_precision(precision);
    let device = Default::default();
    let model = checkpoint::load::<Training>(path, &device).expect("the model loads");
    let pairs = pairs(model.vocab_size());
    let reference = reference_logps(&model.valid(), &pairs, 4, 1, &device, &mut |_| {}).unwrap();
    let logps = reference
        .iter()
        .flat_map(|r| [r.chosen, r.rejected])
        .collect();
    let batch: Vec<&TokenizedPair> = pairs.iter().collect();
    let loss = LossConfig::new(Loss::Sigmoid, 0.1).unwrap();
    let mut trainer = Trainer::new(LrSchedule::constant(1e-5, 1), 0.0, None);
    let (_, step) =
        preference_step(model, &mut trainer, &loss, &batch, &reference, 1, &device).unwrap();
    (logps, [step.metrics.loss, step.optim.grad_norm])
}

#[test]
fn bf16_products_agree_with_f32_within_one_percent() {
    if !bf16_matrix_units() {
        eprintln!("skipped: this CPU has no AMX-BF16 or AVX-512 BF16, so bf16 products run in f32");
        return;
    }
    for path in models() {
        let (f32_logps, f32_step) = run(MatmulPrecision::F32, &path);
        let (bf16_logps, bf16_step) = run(MatmulPrecision::Bf16, &path);
        set_matmul_precision(MatmulPrecision::F32);
        let model = path.display();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-2 * b.abs();
        for (i, (bf16, f32)) in bf16_logps.iter().zip(&f32_logps).enumerate() {
            assert!(
                close(*bf16, *f32),
                "{model}: log-prob sum {i}: bf16 {bf16} vs f32 {f32}"
            );
        }
        let names = ["loss", "gradient norm"];
        for ((name, bf16), f32) in names.iter().zip(bf16_step).zip(f32_step) {
            assert!(
                close(bf16, f32),
                "{model}: first step's {name}: bf16 {bf16} vs f32 {f32}"
            );
        }
        assert_ne!(
            bf16_logps, f32_logps,
            "{model}: bf16 products ran on the unit"
        );
    }
}
