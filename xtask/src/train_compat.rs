//! `cargo xtask train` as it was before the trainer and the experiments became `ropo train`
//! and `ropo experiment`: one command that is the trainer with `--model`/`--data` (or a
//! trainer config), a real-data comparison with a `[dataset]` config, and otherwise the
//! gold-reward experiment (`--experiment practical|length` for a preset). This module turns
//! such a command line into the `ropo` one it stands for, which then parses it with its own
//! flags; nothing else in ropo tells the modes apart.

use std::{
    ffi::{OsStr, OsString},
    path::Path,
};

/// The flags (and TRL's names for them) that ask for the trainer.
const TRAINER_FLAGS: [&str; 6] = [
    "--model",
    "--data",
    "--model_name_or_path",
    "--model-name-or-path",
    "--dataset_name",
    "--dataset-name",
];

/// `--out` and TRL's names for it.
const OUT_FLAGS: [&str; 3] = ["--out", "--output_dir", "--output-dir"];

/// The `ropo` command line a `cargo xtask` one stands for: `train …` becomes `train …` (the
/// trainer), `experiment dataset …` (with the `runs/gold` folder it always had by default),
/// or `experiment gold|practical|length …`; every other command line is returned as it is.
pub fn ropo_command_line(mut args: Vec<OsString>) -> Vec<OsString> {
    let Some(at) = command_position(&args) else {
        return args;
    };
    if args[at] != "train" {
        return args;
    }
    let mut rest = args.split_off(at + 1);
    args.pop();
    let mode: Vec<OsString> = match mode(&rest) {
        Mode::Trainer => vec!["train".into()],
        Mode::Dataset => {
            if value_of(&rest, &OUT_FLAGS).is_none() && value_of(&rest, &["--resume"]).is_none() {
                rest.extend(["--out".into(), "runs/gold".into()]);
            }
            vec!["experiment".into(), "dataset".into()]
        }
        Mode::Grid => {
            let preset = take_flag(&mut rest, "--experiment").unwrap_or_else(|| "gold".into());
            vec!["experiment".into(), preset]
        }
    };
    args.extend(mode);
    args.extend(rest);
    args
}

/// What `cargo xtask train --help` prints above the help of the command it stands for, when
/// that is the gold experiment: that the same command is the trainer with `--model`/`--data`.
pub const GRID_HELP_PREFACE: &str = "cargo xtask train is the trainer with --model/--data or a \
trainer config (cargo xtask train --model M --help lists its flags), a real-data comparison with \
a [dataset] config, and otherwise this experiment:\n";

/// Whether `args` (a whole command line) ask `train` for its help where `train` stands for the
/// gold experiment, which [`GRID_HELP_PREFACE`] then introduces.
pub fn asks_grid_help(args: &[OsString]) -> bool {
    let Some(at) = command_position(args) else {
        return false;
    };
    let rest = &args[at + 1..];
    args[at] == "train"
        && rest.iter().any(|arg| arg == "--help" || arg == "-h")
        && mode(rest) == Mode::Grid
        && value_of(rest, &["--experiment"]).is_none()
}

/// What a `train` command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// `ropo train`.
    Trainer,
    /// `ropo experiment dataset`.
    Dataset,
    /// `ropo experiment gold|practical|length`.
    Grid,
}

/// The trainer where a trainer flag is given or the config (`--config`, or the `--resume`
/// folder's `config.toml`) names a model or data file; a real-data comparison where the config
/// has a `[dataset]` table; else the gold-reward grid. A config that cannot be read is left
/// to the grid, whose reading of it names what is wrong.
fn mode(args: &[OsString]) -> Mode {
    if args
        .iter()
        .any(|arg| TRAINER_FLAGS.iter().any(|flag| is_flag(arg, flag)))
    {
        return Mode::Trainer;
    }
    let config = match (value_of(args, &["--config"]), value_of(args, &["--resume"])) {
        (Some(path), _) => Path::new(&path).to_path_buf(),
        (None, Some(folder)) => Path::new(&folder).join("config.toml"),
        (None, None) => return Mode::Grid,
    };
    let Some(table) = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return Mode::Grid;
    };
    let names_a_file = |key: &str| table.get(key).is_some_and(toml::Value::is_str);
    if names_a_file("model") || names_a_file("data") {
        Mode::Trainer
    } else if table.contains_key("dataset") {
        Mode::Dataset
    } else {
        Mode::Grid
    }
}

/// Where the subcommand's name is: the first argument after the program's that is neither a
/// global flag (`--dtype VALUE`, `--bf16 [true|false]`) nor its value.
fn command_position(args: &[OsString]) -> Option<usize> {
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        let next_is_value = |values: &[&str]| {
            args.get(at + 1)
                .and_then(|next| next.to_str())
                .is_some_and(|next| values.is_empty() || values.contains(&next))
        };
        at += match arg.to_str() {
            Some("--dtype") if next_is_value(&[]) => 2,
            Some("--bf16") if next_is_value(&["true", "false"]) => 2,
            Some(flag) if flag.starts_with('-') => 1,
            _ => return Some(at),
        };
    }
    None
}

/// Whether `arg` is `flag` or `flag=VALUE`.
fn is_flag(arg: &OsStr, flag: &str) -> bool {
    arg.to_str().is_some_and(|arg| {
        arg == flag
            || arg
                .strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The value of the last of `flags` given (`--flag VALUE` or `--flag=VALUE`).
fn value_of(args: &[OsString], flags: &[&str]) -> Option<OsString> {
    let mut value = None;
    for (at, arg) in args.iter().enumerate() {
        for flag in flags {
            if arg == *flag {
                value = args.get(at + 1).cloned();
            } else if let Some(rest) = arg.to_str().and_then(|a| a.strip_prefix(flag)) {
                if let Some(given) = rest.strip_prefix('=') {
                    value = Some(given.into());
                }
            }
        }
    }
    value
}

/// Removes `flag` and its value from `args`, returning the value.
fn take_flag(args: &mut Vec<OsString>, flag: &str) -> Option<OsString> {
    let at = args.iter().position(|arg| is_flag(arg, flag))?;
    let arg = args.remove(at);
    match arg.to_str().and_then(|a| a.split_once('=')) {
        Some((_, value)) => Some(value.into()),
        None if at < args.len() => Some(args.remove(at)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ropo_command_line;

    fn translated(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(Into::into).collect();
        ropo_command_line(args)
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    #[test]
    fn each_mode_of_train_becomes_its_ropo_command() {
        assert_eq!(
            translated(&["x", "train", "--model", "m", "--data", "d"]),
            ["x", "train", "--model", "m", "--data", "d"]
        );
        assert_eq!(
            translated(&["x", "--dtype", "bf16", "train", "--dataset_name=d"]),
            ["x", "--dtype", "bf16", "train", "--dataset_name=d"]
        );
        assert_eq!(
            translated(&["x", "train", "--steps", "3"]),
            ["x", "experiment", "gold", "--steps", "3"]
        );
        assert_eq!(
            translated(&[
                "x",
                "train",
                "--quiet",
                "--experiment",
                "length",
                "--seeds",
                "2"
            ]),
            ["x", "experiment", "length", "--quiet", "--seeds", "2"]
        );
        assert_eq!(
            translated(&["x", "train", "--experiment=practical"]),
            ["x", "experiment", "practical"]
        );
        assert_eq!(translated(&["x", "bench", "step"]), ["x", "bench", "step"]);
    }

    #[test]
    fn only_the_help_of_the_default_experiment_is_prefaced() {
        let asks = |args: &[&str]| {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            super::asks_grid_help(&args)
        };
        assert!(asks(&["x", "train", "--help"]));
        assert!(asks(&["x", "--dtype", "f32", "train", "-h"]));
        assert!(!asks(&["x", "train", "--model", "m", "--help"]));
        assert!(!asks(&["x", "train", "--experiment", "length", "--help"]));
        assert!(!asks(&["x", "train", "--steps", "3"]));
        assert!(!asks(&["x", "bench", "--help"]));
    }

    #[test]
    fn a_config_file_says_which_experiment_it_is() {
        let dir = std::env::temp_dir().join(format!("ropo-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trainer = dir.join("trainer.toml");
        std::fs::write(&trainer, "model = \"m\"\nlr = 1e-5\n").unwrap();
        let dataset = dir.join("dataset.toml");
        std::fs::write(&dataset, "[dataset]\nmodel = \"m\"\n").unwrap();
        let gold = dir.join("gold.toml");
        std::fs::write(&gold, "[model]\nlayers = 2\n").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        assert_eq!(
            translated(&["x", "train", "--config", &path(&trainer)])[1],
            "train"
        );
        assert_eq!(
            translated(&["x", "train", "--config", &path(&dataset)])[1..],
            [
                "experiment",
                "dataset",
                "--config",
                &path(&dataset),
                "--out",
                "runs/gold"
            ]
        );
        assert_eq!(
            translated(&["x", "train", "--config", &path(&gold), "--out", "o"])[1..3],
            ["experiment", "gold"]
        );
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::copy(&trainer, dir.join("run/config.toml")).unwrap();
        assert_eq!(
            translated(&["x", "train", "--resume", &path(&dir.join("run"))])[1],
            "train"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
