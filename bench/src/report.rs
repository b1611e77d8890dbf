//! `rfs-bench report`: turns the `name value unit` lines of one
//! `bench/run.sh` run (rfs, MooseFS and the machine's limits, measured
//! side by side) into `bench/results/<stem>.json` and `<stem>.md`: one
//! table row per workload with rfs, MooseFS, the limit that bounds it, and
//! the ratios. With `--readme`, the table also replaces the one between the
//! README's `bench-table` markers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use crate::figures::Figure;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Files of `name value unit` lines (other lines are skipped).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where the .json and .md go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// File name stem, e.g. `2026-11-25-abc1234`.
    #[arg(long)]
    stem: String,
    /// README whose table between the markers is replaced.
    #[arg(long)]
    readme: Option<PathBuf>,
}

/// One table row: the rfs figure, the MooseFS figure it compares with,
/// and the limit (a figure divided by a factor) that bounds both.
struct Row {
    workload: &'static str,
    rfs: &'static str,
    peer: Option<&'static str>,
    limit: Option<(&'static str, f64, &'static str)>,
}

const fn row(
    workload: &'static str,
    rfs: &'static str,
    peer: Option<&'static str>,
    limit: Option<(&'static str, f64, &'static str)>,
) -> Row {
    Row {
        workload,
        rfs,
        peer,
        limit,
    }
}

const DISK: Option<(&str, f64, &str)> = Some(("disk_write_fsync", 1.0, "disk write, fsync"));
const DISK_3: Option<(&str, f64, &str)> = Some(("disk_write_fsync", 3.0, "disk write, fsync / 3"));
const TCP: Option<(&str, f64, &str)> = Some(("loopback_tcp", 1.0, "loopback TCP"));

const ROWS: &[Row] = &[
    row(
        "put, replication 1 (fsynced)",
        "rfs_put_r1",
        Some("moosefs_put_goal1"),
        DISK,
    ),
    row(
        "put, replication 3 (fsynced, one disk)",
        "rfs_put_r3",
        Some("moosefs_put_goal3"),
        DISK_3,
    ),
    row("get, replication 1", "rfs_get_r1", Some("moosefs_get"), TCP),
    row("get, replication 3", "rfs_get_r3", None, TCP),
    row(
        "put, 4 clients (replication 1)",
        "rfs_put_4clients",
        None,
        DISK,
    ),
    row("get, 4 clients", "rfs_get_4clients", None, TCP),
    row(
        "create + close, 1 task",
        "rfs_create_1",
        Some("moosefs_create"),
        None,
    ),
    row("stat, 1 task", "rfs_stat_1", Some("moosefs_stat"), None),
    row("list, 1 task", "rfs_list_1", Some("moosefs_list"), None),
    row(
        "delete, 1 task",
        "rfs_delete_1",
        Some("moosefs_delete"),
        None,
    ),
    row(
        "create + close, 16 tasks",
        "rfs_create_16",
        Some("moosefs_create_16"),
        None,
    ),
    row(
        "stat, 16 tasks",
        "rfs_stat_16",
        Some("moosefs_stat_16"),
        None,
    ),
    row(
        "list, 16 tasks",
        "rfs_list_16",
        Some("moosefs_list_16"),
        None,
    ),
    row(
        "delete, 16 tasks",
        "rfs_delete_16",
        Some("moosefs_delete_16"),
        None,
    ),
    row("failover, median", "failover_median_ms", None, None),
];

const START: &str = "<!-- bench-table:start -->";
const END: &str = "<!-- bench-table:end -->";

pub fn run(args: &ReportArgs) -> Result<()> {
    let mut figures: BTreeMap<String, Figure> = BTreeMap::new();
    for input in &args.inputs {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        for f in text.lines().filter_map(Figure::parse) {
            figures.insert(f.name.clone(), f);
        }
    }
    let table = markdown(&figures);
    std::fs::create_dir_all(&args.out_dir)?;
    let md = args.out_dir.join(format!("{}.md", args.stem));
    std::fs::write(&md, format!("# rfs benchmarks, {}\n\n{table}", args.stem))?;
    let json = json!({
        "stem": args.stem,
        "figures": figures
            .values()
            .map(|f| (f.name.clone(), json!({"value": f.value, "unit": f.unit})))
            .collect::<serde_json::Map<_, _>>(),
        "table": rows_json(&figures),
    });
    let js = args.out_dir.join(format!("{}.json", args.stem));
    std::fs::write(&js, serde_json::to_string_pretty(&json)?)?;
    println!("{table}");
    eprintln!("wrote {} and {}", md.display(), js.display());
    if let Some(readme) = &args.readme {
        let text = std::fs::read_to_string(readme)?;
        let updated = replace_table(&text, &format!("Run {}:\n\n{table}", args.stem))
            .with_context(|| format!("{} has no {START} … {END} markers", readme.display()))?;
        std::fs::write(readme, updated)?;
    }
    Ok(())
}

fn value(figures: &BTreeMap<String, Figure>, name: &str) -> Option<f64> {
    figures.get(name).map(|f| f.value)
}

fn limit_of(figures: &BTreeMap<String, Figure>, r: &Row) -> Option<f64> {
    let (name, div, _) = r.limit?;
    Some(value(figures, name)? / div)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.1}"))
}

fn markdown(figures: &BTreeMap<String, Figure>) -> String {
    let mut out = String::from(
        "| workload | unit | rfs | MooseFS | limit | rfs / limit | rfs / MooseFS |\n|---|---|---|---|---|---|---|\n",
    );
    for r in ROWS {
        let rfs = value(figures, r.rfs);
        let peer = r.peer.and_then(|p| value(figures, p));
        let limit = limit_of(figures, r);
        if rfs.is_none() && peer.is_none() {
            continue;
        }
        let unit = figures.get(r.rfs).map_or("", |f| f.unit.as_str());
        let limit_cell = match (limit, r.limit) {
            (Some(v), Some((_, _, what))) => format!("{v:.1} ({what})"),
            _ => "—".into(),
        };
        let r2 = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2}×"));
        out.push_str(&format!(
            "| {} | {unit} | {} | {} | {limit_cell} | {} | {} |\n",
            r.workload,
            cell(rfs),
            cell(peer),
            r2(ratio(rfs, limit)),
            r2(ratio(rfs, peer)),
        ));
    }
    let limits: Vec<String> = [
        "loopback_tcp",
        "disk_write_fsync",
        "disk_read_cold",
        "memcpy",
        "crc32c_one_core",
    ]
    .iter()
    .filter_map(|n| figures.get(*n))
    .map(|f| format!("{} {:.0} {}", f.name, f.value, f.unit))
    .collect();
    if !limits.is_empty() {
        out.push_str(&format!(
            "\nMachine limits in the same run: {}.\n",
            limits.join(", ")
        ));
    }
    out
}

fn rows_json(figures: &BTreeMap<String, Figure>) -> Vec<serde_json::Value> {
    ROWS.iter()
        .map(|r| {
            let rfs = value(figures, r.rfs);
            let peer = r.peer.and_then(|p| value(figures, p));
            let limit = limit_of(figures, r);
            json!({
                "workload": r.workload,
                "rfs": rfs,
                "moosefs": peer,
                "limit": limit,
                "rfs_over_limit": ratio(rfs, limit),
                "rfs_over_moosefs": ratio(rfs, peer),
            })
        })
        .collect()
}

/// `text` with what lies between the markers replaced by `table`.
fn replace_table(text: &str, table: &str) -> Option<String> {
    let start = text.find(START)? + START.len();
    let end = text[start..].find(END)? + start;
    Some(format!("{}\n{table}\n{}", &text[..start], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(lines: &str) -> BTreeMap<String, Figure> {
        lines
            .lines()
            .filter_map(Figure::parse)
            .map(|f| (f.name.clone(), f))
            .collect()
    }

    #[test]
    fn ratios_against_the_limit_and_the_peer() {
        let f = figs("disk_write_fsync 300 MB/s\nrfs_put_r3 90 MB/s\nmoosefs_put_goal3 60 MB/s\n");
        let md = markdown(&f);
        let line = md.lines().find(|l| l.contains("replication 3")).unwrap();
        // Limit is a third of the disk: 100 MB/s.
        assert!(
            line.contains("| 90.0 | 60.0 | 100.0 (disk write, fsync / 3) | 0.90× | 1.50× |"),
            "{line}"
        );
        assert!(!md.contains("create"), "rows with no figure are left out");
    }

    #[test]
    fn readme_table_is_replaced_between_the_markers() {
        let text = format!("a\n{START}\nold\n{END}\nb\n");
        let out = replace_table(&text, "new").unwrap();
        assert_eq!(out, format!("a\n{START}\nnew\n{END}\nb\n"));
        assert!(replace_table("no markers", "x").is_none());
    }
}
