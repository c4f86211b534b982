//! Latency pictures of the benches: cumulative distributions on a logarithmic time axis,
//! bittube and its baselines on one chart, the goal marked, written as SVG (plotters' SVG
//! backend: no system library) to `target/bench-plots/<bench>.svg`.

use std::path::PathBuf;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// One curve: a name and its samples as (latency in µs, fraction of samples ≤ it).
pub struct Curve {
    /// The legend's text.
    pub name: String,
    /// Points of the CDF, latency increasing.
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// The CDF of raw samples in ns (sorted here), thinned to at most ~400 points.
    pub fn from_ns(name: impl Into<String>, samples: &[u64]) -> Curve {
        let mut v = samples.to_vec();
        v.sort_unstable();
        let n = v.len().max(1) as f64;
        let step = (v.len() / 400).max(1);
        let mut points: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(i, &ns)| (ns as f64 / 1000.0, (i + 1) as f64 / n))
            .collect();
        if let Some(&last) = v.last() {
            points.push((last as f64 / 1000.0, 1.0));
        }
        Curve {
            name: name.into(),
            points,
        }
    }

    /// The CDF of a histogram of ns values, thinned to at most ~400 points (the last kept).
    pub fn from_hist(name: impl Into<String>, h: &Histogram<u64>) -> Curve {
        let n = h.len().max(1) as f64;
        let mut seen = 0u64;
        let all: Vec<(f64, f64)> = h
            .iter_recorded()
            .map(|v| {
                seen += v.count_at_value();
                (v.value_iterated_to() as f64 / 1000.0, seen as f64 / n)
            })
            .collect();
        let step = (all.len() / 400).max(1);
        let mut points: Vec<(f64, f64)> = all.iter().copied().step_by(step).collect();
        if let Some(&last) = all.last() {
            if points.last() != Some(&last) {
                points.push(last);
            }
        }
        Curve {
            name: name.into(),
            points,
        }
    }
}

/// A vertical line on the chart: the goal (or a reference the goal is relative to).
pub struct Mark {
    /// The legend's text.
    pub name: String,
    /// Where, in µs.
    pub at_us: f64,
}

/// The directory the pictures go to: `$CARGO_TARGET_DIR` or `target/` of the package, then
/// `bench-plots/`.
pub fn plot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-plots")
}

const COLORS: [RGBColor; 8] = [
    RGBColor(0, 90, 181),
    RGBColor(220, 50, 32),
    RGBColor(0, 150, 80),
    RGBColor(230, 140, 0),
    RGBColor(120, 60, 160),
    RGBColor(90, 90, 90),
    RGBColor(0, 0, 0),
    RGBColor(200, 0, 150),
];

/// Draws `curves` and `marks` as a CDF chart titled `title` into
/// `target/bench-plots/<bench>.svg`; returns the file's path.
pub fn write_cdf(
    bench: &str,
    title: &str,
    curves: &[Curve],
    marks: &[Mark],
) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let dir = plot_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{bench}.svg"));
    let xs = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .chain(marks.iter().map(|m| m.at_us))
        .filter(|x| *x > 0.0);
    let (lo, hi) = xs.fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if lo > hi {
        (1.0, 10.0)
    } else {
        (lo * 0.8, hi * 1.25)
    };
    draw(&path, title, curves, marks, (lo, hi)).map_err(|e| e.to_string())?;
    Ok(path)
}

fn draw(
    path: &std::path::Path,
    title: &str,
    curves: &[Curve],
    marks: &[Mark],
    (lo, hi): (f64, f64),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, µs (log scale)")
        .x_labels(16)
        .y_labels(11)
        .y_desc("fraction of samples ≤ latency")
        .x_label_formatter(&|x| {
            if *x < 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.0}")
            }
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied().filter(|p| p.0 > 0.0),
                color.stroke_width(2),
            ))?
            .label(c.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    for (i, m) in marks.iter().enumerate() {
        let color = COLORS[(curves.len() + i) % COLORS.len()];
        let style = ShapeStyle::from(&color).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(m.at_us, 0.0), (m.at_us, 1.0)],
                6,
                4,
                style,
            ))?
            .label(m.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
