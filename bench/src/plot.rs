//! PNG charts of one run for `rfs-bench report`: horizontal grouped bars
//! on a log scale, one group per workload, one bar per series (rfs,
//! MooseFS, the limit; or each latency percentile), the value written at
//! the bar's end. What goes in a chart is decided by `report` from its
//! table of rows; this module only draws.
//!
//! Text is drawn with a font read at run time ([`FONT`]), so no system
//! font lookup (fontconfig) is linked in.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// The font every label is drawn in, from the Debian package [`FONT_PACKAGE`].
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// One bar colour and its legend entry.
pub struct Series {
    pub name: String,
    pub color: RGBColor,
}

/// One workload: a value per series of its panel, `None` for no bar.
#[derive(Debug, PartialEq)]
pub struct Group {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// One chart: its groups share the x axis (`unit`, log scale).
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
    pub groups: Vec<Group>,
}

const WIDTH: u32 = 1400;
const BAR_PX: u32 = 15;
const GROUP_GAP_PX: u32 = 14;
/// Caption, x axis and margins of one panel.
const PANEL_EXTRA_PX: u32 = 110;

/// Draws `panels` one under the other into the PNG at `path`.
pub fn draw(path: &Path, panels: &[Panel]) -> Result<()> {
    if panels.is_empty() {
        bail!("no chart to draw into {}", path.display());
    }
    register()?;
    let heights: Vec<u32> = panels
        .iter()
        .map(|p| {
            let per_group = p.series.len() as u32 * BAR_PX + GROUP_GAP_PX;
            PANEL_EXTRA_PX + p.groups.len() as u32 * per_group
        })
        .collect();
    let root = BitMapBackend::new(path, (WIDTH, heights.iter().sum())).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let breaks: Vec<i32> = heights
        .iter()
        .scan(0, |y, h| {
            *y += *h as i32;
            Some(*y)
        })
        .collect();
    let areas = root.split_by_breakpoints::<i32, i32, _, _>([], &breaks[..breaks.len() - 1]);
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

/// Reads [`FONT`] once and registers it as "sans-serif".
fn register() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| {
            format!("reading the chart font {FONT}: {e}; install the Debian package {FONT_PACKAGE} (scripts/deps.sh bench)")
        })?;
        // Registered fonts live for the whole process.
        register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| format!("{FONT} is not a font plotters can read"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Powers of ten around the positive values: the smallest at or below
/// their minimum, the smallest at or above 2.5× their maximum (room for the
/// value written after the longest bar). `None` when there is no value.
fn log_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })?;
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf((hi * 2.5).log10().ceil());
    Some((lo, hi))
}

fn value_text(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// An axis tick: 1, 10, 100, 1k, 10k, 100k, 1M, ... (log-scale ticks
/// are powers of ten and their multiples).
fn tick_text(v: f64) -> String {
    let (div, suffix) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = v / div;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}{suffix}")
    } else {
        format!("{}{suffix}", (x * 100.0).round() / 100.0)
    }
}

fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, Shift>, p: &Panel) -> Result<()> {
    let values = p
        .groups
        .iter()
        .flat_map(|g| g.values.iter().flatten().copied());
    let Some((lo, hi)) = log_range(values) else {
        bail!("chart {:?} has no value to draw", p.title);
    };
    let n = p.groups.len();
    // A series with no value in any group gets neither slot nor legend
    // entry (a run without MooseFS draws rfs alone).
    let value = |g: &Group, s: usize| g.values.get(s).copied().flatten().filter(|v| *v > 0.0);
    let shown: Vec<usize> = (0..p.series.len())
        .filter(|&s| p.groups.iter().any(|g| value(g, s).is_some()))
        .collect();
    // Group i is centred on y = n - 1 - i (the first row on top); its bars
    // share 0.8 of the unit around the centre, first series on top.
    let slot = 0.8 / shown.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 22))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(45)
        .y_label_area_size(300)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
        .map_err(plot_err)?;
    let label = |y: &f64| {
        let r = y.round();
        if (y - r).abs() > 1e-6 || r < 0.0 || r as usize >= n {
            return String::new();
        }
        p.groups[n - 1 - r as usize].label.clone()
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_label_formatter(&|x| tick_text(*x))
        .x_desc(format!("{} (log scale)", p.unit))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(plot_err)?;
    let text =
        TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (k, &s) in shown.iter().enumerate() {
        let series = &p.series[s];
        let bars: Vec<(f64, f64, f64)> = p
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let v = value(g, s)?;
                let top = (n - 1 - i) as f64 + 0.4 - k as f64 * slot;
                Some((v, top, top - slot * 0.9))
            })
            .collect();
        let color = series.color;
        chart
            .draw_series(
                bars.iter().map(|&(v, top, bottom)| {
                    Rectangle::new([(lo, top), (v, bottom)], color.filled())
                }),
            )
            .map_err(plot_err)?
            .label(&series.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(v, top, bottom)| {
                Text::new(
                    value_text(v),
                    (v * 1.06, (top + bottom) / 2.0),
                    text.clone(),
                )
            }))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_range_spans_powers_of_ten_with_room_for_the_text() {
        let r = log_range([145.0, 5886.9, f64::NAN, 0.0, -1.0].into_iter());
        assert_eq!(r, Some((100.0, 100_000.0)));
        assert_eq!(log_range([0.0].into_iter()), None);
    }

    #[test]
    fn ticks_are_short() {
        let ticks: Vec<String> = [0.1, 1.0, 10.0, 100.0, 1e3, 2e4, 1e6, 1e9]
            .into_iter()
            .map(tick_text)
            .collect();
        assert_eq!(ticks, ["0.1", "1", "10", "100", "1k", "20k", "1M", "1G"]);
    }

    #[test]
    fn draws_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        let panel = Panel {
            title: "throughput".into(),
            unit: "MB/s".into(),
            series: vec![
                Series {
                    name: "rfs".into(),
                    color: BLUE,
                },
                Series {
                    name: "MooseFS".into(),
                    color: RED,
                },
            ],
            groups: vec![
                Group {
                    label: "put".into(),
                    values: vec![Some(210.5), Some(223.4)],
                },
                Group {
                    label: "get".into(),
                    values: vec![Some(531.8), None],
                },
            ],
        };
        draw(&path, &[panel]).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 5_000,
            "a chart with text is more than {} bytes",
            png.len()
        );
        assert!(draw(&dir.path().join("none.png"), &[]).is_err());
    }
}
