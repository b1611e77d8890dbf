//! One measured figure, printed as a `name value unit` line that scripts
//! read (and `rfs-bench report` turns into tables).

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

pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
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
}
