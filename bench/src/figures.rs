//! One measured figure, printed as a `name value unit` line that scripts
//! read (and `rfs-bench report` turns into tables).

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit: unit.to_string(),
        }
    }

    /// `name value unit`, the line format every benchmark prints.
    pub fn line(&self) -> String {
        format!("{} {:.1} {}", self.name, self.value, self.unit)
    }

    /// Parses a `name value unit` line; anything else is `None` (chatter).
    pub fn parse(line: &str) -> Option<Figure> {
        let mut it = line.split_whitespace();
        let (name, value, unit) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        Some(Figure::new(name, value.parse().ok()?, unit))
    }
}

/// The figures among `text`'s lines, by name (a later line wins).
pub fn by_name(text: &str) -> BTreeMap<String, Figure> {
    text.lines()
        .filter_map(Figure::parse)
        .map(|f| (f.name.clone(), f))
        .collect()
}

pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// The latency percentiles every metadata workload reports, as figure
/// name suffixes `_p50`, `_p90`, `_p99` (bench/peers/moosefs.sh uses the
/// same scheme and the same nearest-rank rule).
pub const PERCENTILES: [u32; 3] = [50, 90, 99];

/// The nearest-rank `p`th percentile of `sorted` (ascending): the smallest
/// sample with at least `p`% of the samples at or below it. `None` when
/// there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: u32) -> Option<T> {
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// `<name>_p50 value us` and the other [`PERCENTILES`] of `latencies`;
/// nothing when there are none.
pub fn latency_figures(name: &str, mut latencies: Vec<Duration>) -> Vec<Figure> {
    latencies.sort_unstable();
    PERCENTILES
        .iter()
        .filter_map(|&p| {
            let d = percentile(&latencies, p)?;
            Some(Figure::new(
                format!("{name}_p{p}"),
                d.as_secs_f64() * 1e6,
                "us",
            ))
        })
        .collect()
}

pub fn print(figures: &[Figure]) {
    for f in figures {
        println!("{}", f.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_chatter_is_skipped() {
        let f = Figure::new("rfs_put_r1", 312.26, "MB/s");
        assert_eq!(
            Figure::parse(&f.line()),
            Some(Figure::new("rfs_put_r1", 312.3, "MB/s"))
        );
        assert_eq!(Figure::parse("rfs put/get benchmark: one client"), None);
        assert_eq!(Figure::parse("x notanumber MB/s"), None);
        assert_eq!(Figure::parse("a 1 b c"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 90), Some(90));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        // 10 samples: p50 is the 5th, p90 the 9th, p99 rounds up to the 10th.
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1000];
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&v, 99), Some(1000));
        assert_eq!(percentile(&[7], 1), Some(7));
        assert_eq!(percentile::<u32>(&[], 50), None);
    }

    #[test]
    fn latency_figures_sort_and_name_in_microseconds() {
        // Unsorted, as tasks finish: 100 samples of 1..=100 ms, reversed.
        let lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let f = latency_figures("rfs_stat_16", lat);
        assert_eq!(
            f,
            vec![
                Figure::new("rfs_stat_16_p50", 50_000.0, "us"),
                Figure::new("rfs_stat_16_p90", 90_000.0, "us"),
                Figure::new("rfs_stat_16_p99", 99_000.0, "us"),
            ]
        );
        assert!(latency_figures("x", Vec::new()).is_empty());
    }
}
