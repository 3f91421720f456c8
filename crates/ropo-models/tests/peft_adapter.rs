//! PEFT adapter folders: ropo writes one from a LoRA model and reads it back onto the base
//! with the same log-probs; where `ROPO_PYTHON` names a Python with transformers and peft,
//! `PeftModel.from_pretrained` loads it with the same log-probs too.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Param;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use ropo_models::{
    checkpoint,
    lora::{LoraConfig, LoraTarget},
    peft, token_logps, CausalLm,
};

type B = Flex;

const PROBE: [u32; 8] = [1, 5, 9, 2, 7, 3, 8, 4];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ropo-peft-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The fixture `name` with adapters on `targets` whose `B` is random (so they matter).
fn trained(name: &str, targets: &[LoraTarget]) -> (CausalLm<B>, LoraConfig) {
    let device = Default::default();
    let config = LoraConfig {
        rank: 2,
        alpha: 6.0,
        dropout: 0.1,
        targets: targets.to_vec(),
        seed: 3,
    };
    let mut model = checkpoint::load::<B>(&fixture(name), &device)
        .unwrap()
        .with_lora(&config)
        .unwrap();
    B::seed(&device, 9);
    model.visit_sites(&mut |site| {
        if let Some(adapter) = site.layer.parts().1 {
            let shape = adapter.b.val().dims();
            adapter.b = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.5),
                &device,
            ));
        }
    });
    (model, config)
}

#[test]
fn an_adapter_folder_round_trips_onto_its_base() {
    for (name, targets) in [
        (
            "llama",
            &[LoraTarget::Q, LoraTarget::V, LoraTarget::Down][..],
        ),
        ("gpt_neox", &LoraTarget::ALL[..]),
        ("gpt2", &[LoraTarget::O, LoraTarget::Up][..]),
    ] {
        let device = Default::default();
        let (model, config) = trained(name, targets);
        let folder = scratch(name);
        peft::save_adapter(&model, &config, "base", &folder).unwrap();
        let base = checkpoint::load::<B>(&fixture(name), &device).unwrap();
        let loaded = peft::load_adapter(base, &folder).unwrap();
        let ours = token_logps(&model, &PROBE, &device).unwrap();
        assert_eq!(
            token_logps(&loaded, &PROBE, &device).unwrap(),
            ours,
            "{name}"
        );
        assert_eq!(loaded.adapters().len(), model.adapters().len(), "{name}");
        if let Ok(python) = std::env::var("ROPO_PYTHON") {
            peft_agrees(&python, &fixture(name), &folder, &ours);
        }
        std::fs::remove_dir_all(&folder).unwrap();
    }
}

#[test]
fn a_wrong_or_incomplete_adapter_is_refused_naming_the_tensor() {
    let device = Default::default();
    let (model, config) = trained("llama", &[LoraTarget::Q]);
    let folder = scratch("wrong");
    peft::save_adapter(&model, &config, "base", &folder).unwrap();
    let other = checkpoint::load::<B>(&fixture("gpt_neox"), &device).unwrap();
    let error = peft::load_adapter(other, &folder).expect_err("a Llama adapter on GPT-NeoX");
    assert!(error.to_string().contains("no projection"), "{error}");
    let config_path = folder.join(peft::CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        text.replace("self_attn.q_proj", "self_attn.k_proj"),
    )
    .unwrap();
    let base = checkpoint::load::<B>(&fixture("llama"), &device).unwrap();
    let error = peft::load_adapter(base, &folder).expect_err("k_proj factors are not stored");
    let message = error.to_string();
    assert!(
        message
            .contains("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight is missing"),
        "{message}"
    );
    assert!(
        message.contains("q_proj.lora_A.weight is not an adapter"),
        "{message}"
    );
    std::fs::remove_dir_all(&folder).unwrap();
}

/// Loads `base` + the adapter in `folder` with transformers and peft and compares the per-token
/// log-probs of [`PROBE`] with ropo's (1e-4).
fn peft_agrees(python: &str, base: &Path, folder: &Path, ours: &[f64]) {
    let script = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
model = PeftModel.from_pretrained(model, sys.argv[2]).eval()
ids = torch.tensor([json.loads(sys.argv[3])])
with torch.no_grad():
    logps = model(ids).logits[0].double().log_softmax(-1)
print(json.dumps([logps[i, t].item() for i, t in enumerate(ids[0, 1:].tolist())]))
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .arg(base)
        .arg(folder)
        .arg(serde_json::to_string(&PROBE).unwrap())
        .output()
        .expect("ROPO_PYTHON runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<f64> = serde_json::from_slice(&output.stdout).unwrap();
    for (a, b) in theirs.iter().zip(ours) {
        assert!((a - b).abs() < 1e-4, "peft {a} vs ropo {b}");
    }
}
