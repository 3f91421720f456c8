//! SVG plots of an experiment (plotters' SVG backend: no fonts or native libraries needed).

use plotters::prelude::*;

use crate::{
    config::GoldExperiment,
    paired::PairedDifference,
    records::{CurvePoint, ExperimentOutcome, LossHistogram},
    summary::Summary,
    TrainError,
};

/// A validation metric the curves show: its name in files, its title, and how to read it
/// from a point (`None`: not measured there).
pub struct CurveMetric {
    /// The file and table name (`win_rate` → `curves-win_rate.svg`).
    pub name: &'static str,
    /// The title in plots and tables.
    pub title: &'static str,
    /// The value at a point.
    pub read: fn(&CurvePoint) -> Option<f64>,
}

/// The validation metrics with curves: gold reward, gold win rate and, when tracked, the
/// flip-detection AUC of the loss.
pub const CURVE_METRICS: [CurveMetric; 3] = [
    CurveMetric {
        name: "gold_reward",
        title: "validation gold reward",
        read: |p| Some(p.gold_reward),
    },
    CurveMetric {
        name: "win_rate",
        title: "validation gold win rate",
        read: |p| Some(p.gold_win_rate),
    },
    CurveMetric {
        name: "noise_auc",
        title: "flip-detection AUC of the loss",
        read: |p| p.noise_auc,
    },
];

fn plot_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("cannot draw a plot: {e}"))
}

/// `metric` against the noise rate, one line per method: the mean over seeds with the 95%
/// bootstrap interval of that mean as bars.
pub fn metric_against_noise(
    experiment: &GoldExperiment,
    summary: &Summary,
    metric: &str,
) -> Result<String, TrainError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let max_noise = experiment
            .noise
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .max(0.05);
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{metric} against label noise"), ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.02..max_noise + 0.02, 0.0..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("noise rate η")
            .y_desc(metric)
            .draw()
            .map_err(plot_error)?;
        for (index, loss) in experiment.loss_names().iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let points: Vec<(f64, PairedDifference)> = experiment
                .noise
                .iter()
                .filter_map(|&n| {
                    let entry = summary.get(loss, n, metric)?;
                    let zero = vec![0.0; entry.values.len()];
                    Some((n, PairedDifference::of(&entry.values, &zero)?))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, m)| (*x, m.mean)),
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(loss.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(points.iter().map(|(x, m)| {
                    ErrorBar::new_vertical(*x, m.low, m.mean, m.high, color.filled(), 6)
                }))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A validation metric against preference steps, one line per (method, η), mean over seeds.
pub fn validation_curves(
    experiment: &GoldExperiment,
    outcome: &ExperimentOutcome,
    metric: &CurveMetric,
) -> Result<String, TrainError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let steps = experiment.preference.steps.max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} against training length", metric.title),
                ("sans-serif", 20),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..steps, 0.0..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("preference steps")
            .y_desc(metric.title)
            .draw()
            .map_err(plot_error)?;
        let mut index = 0;
        for loss in &experiment.loss_names() {
            for &noise in &experiment.noise {
                let runs: Vec<_> = outcome
                    .runs
                    .iter()
                    .filter(|r| &r.loss == loss && r.noise == noise)
                    .collect();
                let Some(first) = runs.first() else { continue };
                let points: Vec<(f64, f64)> = (0..first.curve.len())
                    .filter_map(|i| {
                        let values: Vec<f64> = runs
                            .iter()
                            .filter_map(|r| r.curve.get(i))
                            .filter_map(metric.read)
                            .collect();
                        (!values.is_empty()).then(|| {
                            (
                                first.curve[i].step as f64,
                                values.iter().sum::<f64>() / values.len() as f64,
                            )
                        })
                    })
                    .collect();
                let color = Palette99::pick(index).to_rgba();
                index += 1;
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(format!("{loss} η={noise}"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            }
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Lines of `(step, value)` points under one `title`, each series with its name (e.g. the
/// trainer's `loss` and `eval_loss` against step); the y range fits the finite values.
pub fn step_curves(
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<String, TrainError> {
    let finite = || {
        series
            .iter()
            .flat_map(|(_, points)| points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let last = finite().map(|p| p.0).fold(1.0, f64::max);
    let low = finite().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = finite().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = match (low.is_finite(), high > low) {
        (false, _) => (0.0, 1.0),
        (true, true) => (low - 0.05 * (high - low), high + 0.05 * (high - low)),
        (true, false) => (low - 0.5, low + 0.5),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last, low..high)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .draw()
            .map_err(plot_error)?;
        for (index, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let kept = points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(kept, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Clean against flipped pairs' losses (counts per bin), as the filter saw them.
pub fn loss_histogram(histogram: &LossHistogram, title: &str) -> Result<String, TrainError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let low = histogram.edges.first().copied().unwrap_or(0.0);
        let high = histogram
            .edges
            .last()
            .copied()
            .unwrap_or(1.0)
            .max(low + 1e-9);
        let top = histogram
            .clean
            .iter()
            .chain(&histogram.flipped)
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(low..high, 0.0..top * 1.1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("loss under the current policy (the filter drops the highest)")
            .y_desc("pairs")
            .draw()
            .map_err(plot_error)?;
        for (label, counts, color) in [
            ("clean", &histogram.clean, BLUE.mix(0.5)),
            ("flipped", &histogram.flipped, RED.mix(0.5)),
        ] {
            let bars = counts.iter().enumerate().map(|(i, count)| {
                let (left, right) = (histogram.edges[i], histogram.edges[i + 1]);
                Rectangle::new([(left, 0.0), (right, *count as f64)], color.filled())
            });
            chart
                .draw_series(bars)
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
