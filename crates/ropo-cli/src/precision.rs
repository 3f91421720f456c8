//! `--dtype`: the precision of the models' matrix products, for every command.

use clap::{Args, ValueEnum};
use ropo::models::product::{set_matmul_precision, MatmulPrecision};

/// The global flags that choose the precision of matrix products.
#[derive(Args)]
pub struct PrecisionFlags {
    /// Matrix products in f32, or in bf16 (inputs rounded to bf16 and multiplied on the CPU's
    /// AMX tiles or AVX-512 BF16 units, sums, weights, gradients and optimiser state in f32, as
    /// under PyTorch's CPU autocast; f32 where the machine has neither).
    #[arg(long, global = true, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// TRL's `--bf16` (`--bf16`, `--bf16 true|false`): `--dtype bf16`.
    #[arg(
        long,
        global = true,
        hide = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub bf16: Option<bool>,
}

/// `--dtype`: the precision of matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// f32 throughout.
    F32,
    /// bf16 products with f32 sums, where the CPU has AMX-BF16 or AVX-512 BF16.
    Bf16,
}

impl PrecisionFlags {
    /// Sets the process's product precision; says so on stderr where bf16 is asked for and
    /// this backend or CPU computes in f32.
    pub fn apply(&self) {
        if self.dtype != Dtype::Bf16 && self.bf16 != Some(true) {
            return;
        }
        set_matmul_precision(MatmulPrecision::Bf16);
        if ropo::backend::products_precision() == MatmulPrecision::F32 {
            eprintln!(
                "note: --dtype bf16 computes in bf16 on the cpu backend of a CPU with AMX-BF16 \
                 or AVX-512 BF16; on this one ({}) products stay f32",
                ropo::backend::NAME
            );
        }
    }
}
