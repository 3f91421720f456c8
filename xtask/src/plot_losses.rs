//! `cargo xtask plot-losses`: the picture that explains ROPO — how hard each loss pushes on a
//! pair (its gradient weight −∂ℓ/∂h) as a function of the pair's margin h.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use clap::Args;
use plotters::prelude::*;
use ropo::backend::Selected;
use ropo::core::{Loss, LossConfig};

use crate::CmdResult;

/// Where to write the SVG and at which β.
#[derive(Args)]
pub struct PlotArgs {
    /// Output SVG file.
    #[arg(long, default_value = "docs/losses-weight.svg")]
    out: PathBuf,
    /// Inverse temperature β shared by every curve.
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
}

/// Draws `−∂ℓ/∂h` against `βh ∈ [−10, 10]` for DPO, cDPO, rDPO (ε = 0.1) and ROPO with
/// α ∈ {2, 6, 14, 30} and Hölder-DPO (γ = 2), in units of β so the curves read the same at
/// any β. (Dr. DPO's per-pair weight is DPO's times a batch weight, so it has no curve here.)
pub fn run(args: &PlotArgs) -> CmdResult {
    let curves = [
        ("DPO", Loss::Sigmoid),
        ("cDPO ε=0.1", Loss::Cdpo { epsilon: 0.1 }),
        ("rDPO ε=0.1", Loss::Rdpo { epsilon: 0.1 }),
        ("ROPO α=2", Loss::Ropo { alpha: 2.0 }),
        ("ROPO α=6", Loss::Ropo { alpha: 6.0 }),
        ("ROPO α=14", Loss::Ropo { alpha: 14.0 }),
        ("ROPO α=30", Loss::Ropo { alpha: 30.0 }),
        ("Hölder-DPO γ=2", Loss::Holder { gamma: 2.0 }),
    ];
    let scaled: Vec<f64> = (-400..=400).map(|i| f64::from(i) / 40.0).collect();
    let margins: Vec<f64> = scaled.iter().map(|z| z / args.beta).collect();
    let tmp = args.out.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (860, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Gradient weight −∂ℓ/∂h (in units of β)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(-10.0..10.0, -0.2..1.25)?;
        chart
            .configure_mesh()
            .x_desc("β·h (margin; negative = the model prefers the 'rejected' response)")
            .y_desc("−∂ℓ/∂h / β")
            .draw()?;
        for (index, (label, loss)) in curves.iter().enumerate() {
            let config = LossConfig::new(*loss, args.beta)?;
            let margins = Tensor::<Selected, 1>::from_data(
                TensorData::from(margins.as_slice()),
                &Default::default(),
            );
            let weights: Vec<f64> = config
                .dloss_dmargin(margins)
                .into_data()
                .iter::<f64>()
                .map(|d| -d / args.beta)
                .collect();
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    scaled.iter().copied().zip(weights),
                    color.stroke_width(2),
                ))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}
