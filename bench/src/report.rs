//! `rfs-bench report`: turns the `name value unit` lines of one
//! `bench/run.sh` run (rfs, MooseFS and the machine's limits, measured
//! side by side) into `bench/results/<stem>.json` and `<stem>.md`: one
//! table row per workload with rfs, MooseFS, the limit that bounds it, and
//! the ratios, and the latency percentiles of the metadata workloads where
//! the run has them (`<figure>_p50`, `_p90`, `_p99`), and the raft log's
//! fdatasync table when the run has `log_fsync_*` figures
//! ([`log_fsync::markdown`], with its finding). It draws the same
//! rows as PNG charts ([`crate::plot`]): `<stem>-throughput.png` and
//! `<stem>-latency.png`. With `--readme`, the table and the charts also
//! replace what is between the README's `bench-table` markers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::style::RGBColor;
use serde_json::json;

use crate::figures::{Figure, PERCENTILES};
use crate::log_fsync;
use crate::plot::{self, Group, Panel, Series};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Files of `name value unit` lines (other lines are skipped).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where the .json, .md and .png go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// File name stem, e.g. `2026-11-25-abc1234`.
    #[arg(long)]
    stem: String,
    /// README whose table and charts between the markers are replaced.
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

// Disk limits in each put's own shape (`limits::disk_jobs`): concurrent
// writers, each block file fsynced at close. One buffered stream and one
// fsync (`disk_write_fsync`) does not bound three datanodes writing at
// once: r=3 puts measured 2.25× that "limit".
const DISK: Option<(&str, f64, &str)> = Some(("disk_fio_1writer", 1.0, "fio, 1 writer"));
const DISK_3: Option<(&str, f64, &str)> = Some(("disk_fio_3writers", 3.0, "fio, 3 writers, / 3"));
const DISK_CLIENTS: Option<(&str, f64, &str)> =
    Some(("disk_fio_clients", 1.0, "fio, a writer per client"));
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
        DISK_CLIENTS,
    ),
    row("get, 4 clients", "rfs_get_4clients", None, TCP),
    row(
        "CRC32C per 512-byte chunk, one core",
        "crc32c_chunks_one_core",
        None,
        Some(("crc32c_one_core", 1.0, "CRC32C of one long buffer")),
    ),
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
    row(
        "committed creates, 1 client (raw RPC, HA group)",
        "creates_per_s_1",
        None,
        None,
    ),
    row(
        "committed creates, 16 clients (raw RPC, HA group)",
        "creates_per_s_16",
        None,
        None,
    ),
    row(
        "namenode memory per one-block file (nn-memory)",
        "nn_rss_per_file",
        None,
        None,
    ),
    row("failover, median", "failover_median_ms", None, None),
];

const START: &str = "<!-- bench-table:start -->";
const END: &str = "<!-- bench-table:end -->";

pub fn run(args: &ReportArgs) -> Result<()> {
    let mut figures: BTreeMap<String, Figure> = BTreeMap::new();
    let mut fio_jobs = Vec::new();
    let mut log_fsync_dirs = Vec::new();
    for input in &args.inputs {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        figures.extend(crate::figures::by_name(&text));
        fio_jobs.extend(text.lines().filter_map(fio_job));
        log_fsync_dirs.extend(text.lines().filter_map(log_fsync_dir));
    }
    std::fs::create_dir_all(&args.out_dir)?;
    let charts = draw_charts(&figures, &args.out_dir, &args.stem)?;
    let table = markdown(&figures, &fio_jobs, &log_fsync_dirs);
    let md = args.out_dir.join(format!("{}.md", args.stem));
    let md_images: String = charts
        .iter()
        .map(|(what, png)| format!("\n![{what}]({})\n", file_name(png)))
        .collect();
    std::fs::write(
        &md,
        format!("# rfs benchmarks, {}\n\n{table}{md_images}", args.stem),
    )?;
    let mut log_fsync = log_fsync::rows_json(&figures);
    log_fsync["measured_in"] = json!(log_fsync_dirs);
    let json = json!({
        "stem": args.stem,
        "figures": figures
            .values()
            .map(|f| (f.name.clone(), json!({"value": f.value, "unit": f.unit})))
            .collect::<serde_json::Map<_, _>>(),
        "table": rows_json(&figures),
        "log_fsync": log_fsync,
        "charts": charts.iter().map(|(_, png)| file_name(png)).collect::<Vec<_>>(),
    });
    let js = args.out_dir.join(format!("{}.json", args.stem));
    std::fs::write(&js, serde_json::to_string_pretty(&json)?)?;
    println!("{table}");
    eprintln!("wrote {} and {}", md.display(), js.display());
    if let Some(readme) = &args.readme {
        let text = std::fs::read_to_string(readme)?;
        let images: String = charts
            .iter()
            .map(|(what, png)| format!("\n![{what}]({})\n", link_from(readme, png)))
            .collect();
        let block = format!("Run {}:\n\n{table}{images}", args.stem);
        let updated = replace_table(&text, &block)
            .with_context(|| format!("{} has no {START} … {END} markers", readme.display()))?;
        std::fs::write(readme, updated)?;
    }
    Ok(())
}

/// Draws `<stem>-throughput.png` and `<stem>-latency.png` in `out_dir`,
/// each only when the figures have something for it; what was drawn.
fn draw_charts(
    figures: &BTreeMap<String, Figure>,
    out_dir: &Path,
    stem: &str,
) -> Result<Vec<(&'static str, PathBuf)>> {
    let mut drawn = Vec::new();
    let throughput = out_dir.join(format!("{stem}-throughput.png"));
    let panels = throughput_panels(figures, stem);
    if panels.is_empty() {
        eprintln!("no throughput figures: {} not drawn", throughput.display());
    } else {
        plot::draw(&throughput, &panels)?;
        eprintln!("wrote {}", throughput.display());
        drawn.push(("throughput", throughput));
    }
    let latency = out_dir.join(format!("{stem}-latency.png"));
    match latency_panel(figures, stem) {
        None => eprintln!(
            "no latency percentiles (`<figure>_p50 … us`) in the input: {} not drawn",
            latency.display()
        ),
        Some(panel) => {
            plot::draw(&latency, &[panel])?;
            eprintln!("wrote {}", latency.display());
            drawn.push(("latency", latency));
        }
    }
    Ok(drawn)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `image` as a link from the file `from` (relative to its directory when
/// it lies under it, else as given).
fn link_from(from: &Path, image: &Path) -> String {
    let dir = from
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (dir.canonicalize(), image.canonicalize()) {
        (Ok(d), Ok(i)) => match i.strip_prefix(&d) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => image.display().to_string(),
        },
        _ => image.display().to_string(),
    }
}

const RFS: RGBColor = RGBColor(31, 119, 180);
const MOOSEFS: RGBColor = RGBColor(255, 127, 14);
const LIMIT: RGBColor = RGBColor(160, 160, 160);
/// p50, p90, p99: light to dark.
const RFS_SHADES: [RGBColor; 3] = [
    RGBColor(158, 202, 225),
    RGBColor(66, 146, 198),
    RGBColor(8, 69, 148),
];
const MOOSEFS_SHADES: [RGBColor; 3] = [
    RGBColor(253, 208, 162),
    RGBColor(253, 141, 60),
    RGBColor(200, 65, 1),
];

fn unit_of<'a>(figures: &'a BTreeMap<String, Figure>, r: &Row) -> Option<&'a str> {
    figures
        .get(r.rfs)
        .or_else(|| r.peer.and_then(|p| figures.get(p)))
        .map(|f| f.unit.as_str())
}

/// The rows whose unit is one of `units`, as bar groups: rfs, MooseFS and
/// (`with_limit`) the limit; rows with neither rfs nor MooseFS are left
/// out, as in the table.
fn throughput_groups(
    figures: &BTreeMap<String, Figure>,
    units: &[&str],
    with_limit: bool,
) -> Vec<Group> {
    ROWS.iter()
        .filter(|r| unit_of(figures, r).is_some_and(|u| units.contains(&u)))
        .map(|r| {
            let mut values = vec![
                value(figures, r.rfs),
                r.peer.and_then(|p| value(figures, p)),
            ];
            if with_limit {
                values.push(limit_of(figures, r));
            }
            Group {
                label: r.workload.to_string(),
                values,
            }
        })
        .collect()
}

/// Data throughput (MB/s, beside its limit) and metadata rates (ops/s,
/// entries/s), each where the run has figures for it.
fn throughput_panels(figures: &BTreeMap<String, Figure>, stem: &str) -> Vec<Panel> {
    let series = |with_limit: bool| {
        let mut s = vec![
            Series {
                name: "rfs".into(),
                color: RFS,
            },
            Series {
                name: "MooseFS".into(),
                color: MOOSEFS,
            },
        ];
        if with_limit {
            s.push(Series {
                name: "machine limit".into(),
                color: LIMIT,
            });
        }
        s
    };
    let data = Panel {
        title: format!("Data throughput, run {stem}"),
        unit: "MB/s".into(),
        series: series(true),
        groups: throughput_groups(figures, &["MB/s"], true),
    };
    let meta = Panel {
        title: format!("Metadata rates, run {stem}"),
        unit: "ops/s (list: entries/s)".into(),
        series: series(false),
        groups: throughput_groups(figures, &["ops/s", "entries/s"], false),
    };
    [data, meta]
        .into_iter()
        .filter(|p| !p.groups.is_empty())
        .collect()
}

/// Per row with any percentile figure: rfs p50, p90, p99, then MooseFS's
/// (`<figure>_p<N>`, in µs).
fn latency_groups(figures: &BTreeMap<String, Figure>) -> Vec<Group> {
    ROWS.iter()
        .filter_map(|r| {
            let values: Vec<Option<f64>> = [Some(r.rfs), r.peer]
                .iter()
                .flat_map(|name| {
                    PERCENTILES
                        .iter()
                        .map(move |p| name.and_then(|n| value(figures, &format!("{n}_p{p}"))))
                })
                .collect();
            values.iter().any(Option::is_some).then(|| Group {
                label: r.workload.to_string(),
                values,
            })
        })
        .collect()
}

fn latency_panel(figures: &BTreeMap<String, Figure>, stem: &str) -> Option<Panel> {
    let groups = latency_groups(figures);
    if groups.is_empty() {
        return None;
    }
    let series = [("rfs", RFS_SHADES), ("MooseFS", MOOSEFS_SHADES)]
        .iter()
        .flat_map(|(who, shades)| {
            PERCENTILES
                .iter()
                .zip(shades)
                .map(move |(p, &color)| Series {
                    name: format!("{who} p{p}"),
                    color,
                })
        })
        .collect();
    Some(Panel {
        title: format!("Metadata latency of single operations, run {stem}"),
        unit: "µs".into(),
        series,
        groups,
    })
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

/// `NAME: COMMAND` of a `# fio NAME: COMMAND` line (`limits` prints one
/// before each fio figure).
fn fio_job(line: &str) -> Option<String> {
    line.strip_prefix("# fio ").map(str::to_string)
}

/// `DIR: …, on FSTYPE SOURCE` of a `# log-fsync DIR: …` line (`limits`
/// and `log-fsync` print one before the raft log's figures).
fn log_fsync_dir(line: &str) -> Option<String> {
    line.strip_prefix("# log-fsync ").map(str::to_string)
}

/// The rows whose rfs figure beats the limit that should bound it: a
/// finding to explain (the limit measured the wrong shape, or rfs does
/// something the limit does not), never to tune away.
fn findings(figures: &BTreeMap<String, Figure>) -> Vec<String> {
    ROWS.iter()
        .filter_map(|r| {
            let limit = limit_of(figures, r)?;
            let over = ratio(value(figures, r.rfs), Some(limit)).filter(|x| *x > 1.0)?;
            let (_, _, what) = r.limit?;
            Some(format!(
                "**Finding:** {} ran at {over:.2}× its limit ({what}, {limit:.1}): \
                 that limit does not bound this workload as measured.",
                r.workload
            ))
        })
        .collect()
}

fn markdown(
    figures: &BTreeMap<String, Figure>,
    fio_jobs: &[String],
    log_fsync_dirs: &[String],
) -> String {
    let mut out = String::new();
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
        if out.is_empty() {
            out.push_str(
                "| workload | unit | rfs | MooseFS | limit | rfs / limit | rfs / MooseFS |\n\
                 |---|---|---|---|---|---|---|\n",
            );
        }
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
    if !fio_jobs.is_empty() {
        out.push_str("\nDisk limits, measured with fio in each put's shape:\n\n");
        for job in fio_jobs {
            out.push_str(&format!("- `{job}`\n"));
        }
    }
    if let Some(table) = log_fsync::markdown(figures) {
        out.push_str(
            "\nRaft log, one write + one fdatasync per batch and writer, per file layout \
             (`log-fsync`; the percentiles time the fdatasync alone)",
        );
        if !log_fsync_dirs.is_empty() {
            out.push_str(&format!(", measured in {}", log_fsync_dirs.join("; ")));
        }
        out.push_str(&format!(":\n\n{table}"));
    }
    let findings = findings(figures);
    if !findings.is_empty() {
        out.push('\n');
        for f in findings {
            out.push_str(&format!("{f}\n"));
        }
    }
    let latency = latency_groups(figures);
    if !latency.is_empty() {
        out.push_str(
            "\nLatency of single operations, µs (nearest-rank percentiles):\n\n\
             | workload | rfs p50 | rfs p90 | rfs p99 | MooseFS p50 | MooseFS p90 | MooseFS p99 |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for g in latency {
            let cells: Vec<String> = g.values.iter().map(|v| cell(*v)).collect();
            out.push_str(&format!("| {} | {} |\n", g.label, cells.join(" | ")));
        }
    }
    // A run of limits alone (no workload row) starts at its first section.
    if out.starts_with('\n') {
        out.remove(0);
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
    use crate::figures::by_name;

    #[test]
    fn ratios_against_the_limit_and_the_peer() {
        let f = by_name(
            "disk_write_fsync 100 MB/s\ndisk_fio_3writers 300 MB/s\nrfs_put_r3 90 MB/s\n\
             moosefs_put_goal3 60 MB/s\n",
        );
        let md = markdown(&f, &[], &[]);
        let line = md.lines().find(|l| l.contains("replication 3")).unwrap();
        // Limit: a third of what three concurrent writers got, not of one
        // stream.
        assert!(
            line.contains("| 90.0 | 60.0 | 100.0 (fio, 3 writers, / 3) | 0.90× | 1.50× |"),
            "{line}"
        );
        assert!(!md.contains("create"), "rows with no figure are left out");
        assert!(!md.contains("Finding"), "{md}");
    }

    #[test]
    fn a_put_above_its_limit_is_a_finding_and_the_fio_jobs_are_shown() {
        let text = "# fio disk_fio_1writer: fio --name=disk_fio_1writer --numjobs=1\n\
                    disk_fio_1writer 200 MB/s\nrfs_put_r1 250 MB/s\n\
                    disk_fio_clients 300 MB/s\nrfs_put_4clients 240 MB/s\n";
        let jobs: Vec<String> = text.lines().filter_map(fio_job).collect();
        let md = markdown(&by_name(text), &jobs, &[]);
        assert!(
            md.contains("- `disk_fio_1writer: fio --name=disk_fio_1writer --numjobs=1`"),
            "{md}"
        );
        assert!(
            md.contains("**Finding:** put, replication 1 (fsynced) ran at 1.25× its limit (fio, 1 writer, 200.0)"),
            "{md}"
        );
        assert_eq!(md.matches("**Finding:**").count(), 1, "{md}");
    }

    #[test]
    fn the_raft_log_table_says_where_it_was_measured() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("run.txt");
        std::fs::write(
            &input,
            "# log-fsync /d: 2 s per cell, 64 MiB segments, on ext4 /dev/vda, load average 0.10 0.20 0.30 at the start\n\
             log_fsync_append_3w_512b_syncs_per_s 1000 syncs/s\n\
             log_fsync_zeroed_3w_512b_syncs_per_s 2000 syncs/s\n\
             | appending | 3 | 512 B | the probe's own table, chatter |\n\
             **Finding:** the probe's own finding, chatter\n",
        )
        .unwrap();
        let args = ReportArgs {
            inputs: vec![input],
            out_dir: dir.path().to_path_buf(),
            stem: "d-abc".into(),
            readme: None,
        };
        run(&args).unwrap();
        let md = std::fs::read_to_string(dir.path().join("d-abc.md")).unwrap();
        assert!(
            md.contains("measured in /d: 2 s per cell, 64 MiB segments, on ext4 /dev/vda, load"),
            "{md}"
        );
        assert!(
            md.contains("| zero-filled | 3 | 512 B | — | — | — | 2000 | 2.00× | — |"),
            "{md}"
        );
        assert_eq!(md.matches("**Finding:** raft log").count(), 1, "{md}");
        assert!(
            md.starts_with("# rfs benchmarks, d-abc\n\nRaft log, one write"),
            "no workload figures, no empty workload table: {md}"
        );
        assert!(!md.contains("chatter"), "{md}");
        let js: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("d-abc.json")).unwrap())
                .unwrap();
        assert_eq!(js["log_fsync"]["rows"][1]["over_append"], 2.0);
        assert!(js["log_fsync"]["finding"]
            .as_str()
            .unwrap()
            .contains("zero-filled"));
        assert!(js["log_fsync"]["measured_in"][0]
            .as_str()
            .unwrap()
            .starts_with("/d:"));
    }

    #[test]
    fn readme_table_is_replaced_between_the_markers() {
        let text = format!("a\n{START}\nold\n{END}\nb\n");
        let out = replace_table(&text, "new").unwrap();
        assert_eq!(out, format!("a\n{START}\nnew\n{END}\nb\n"));
        assert!(replace_table("no markers", "x").is_none());
    }

    #[test]
    fn chart_groups_come_from_the_rows() {
        let f = by_name(
            "disk_fio_1writer 270 MB/s\nrfs_put_r1 210 MB/s\nrfs_get_r1 530 MB/s\n\
             moosefs_get 340 MB/s\nrfs_create_1 145 ops/s\nmoosefs_create 2600 ops/s\n\
             rfs_list_1 1000 entries/s\nfailover_median_ms 866 ms\n",
        );
        let g = |label: &str, values: Vec<Option<f64>>| Group {
            label: label.into(),
            values,
        };
        // No MooseFS put figure and no loopback_tcp: no bar, not a 0.
        assert_eq!(
            throughput_groups(&f, &["MB/s"], true),
            vec![
                g(
                    "put, replication 1 (fsynced)",
                    vec![Some(210.0), None, Some(270.0)]
                ),
                g("get, replication 1", vec![Some(530.0), Some(340.0), None]),
            ]
        );
        assert_eq!(
            throughput_groups(&f, &["ops/s", "entries/s"], false),
            vec![
                g("create + close, 1 task", vec![Some(145.0), Some(2600.0)]),
                g("list, 1 task", vec![Some(1000.0), None]),
            ]
        );
        // Failover (ms) is in neither chart; no percentiles, no latency chart.
        let panels = throughput_panels(&f, "s");
        assert_eq!(panels.len(), 2);
        assert!(panels
            .iter()
            .all(|p| p.groups.iter().all(|g| !g.label.contains("failover"))));
        assert!(latency_panel(&f, "s").is_none());
    }

    #[test]
    fn latency_groups_take_the_percentile_figures() {
        let f = by_name(
            "rfs_create_1 145 ops/s\nrfs_create_1_p50 400 us\nrfs_create_1_p90 900 us\n\
             rfs_create_1_p99 5000 us\nmoosefs_create_p50 300 us\n\
             rfs_stat_16_p99 70 us\nrfs_stat_1 1000 ops/s\n",
        );
        assert_eq!(
            latency_groups(&f),
            vec![
                Group {
                    label: "create + close, 1 task".into(),
                    values: vec![
                        Some(400.0),
                        Some(900.0),
                        Some(5000.0),
                        Some(300.0),
                        None,
                        None
                    ],
                },
                Group {
                    label: "stat, 16 tasks".into(),
                    values: vec![None, None, Some(70.0), None, None, None],
                },
            ]
        );
        let p = latency_panel(&f, "s").unwrap();
        assert_eq!(p.series.len(), 6);
        assert_eq!(p.series[3].name, "MooseFS p50");
        let md = markdown(&f, &[], &[]);
        assert!(
            md.contains("| create + close, 1 task | 400.0 | 900.0 | 5000.0 | 300.0 | — | — |"),
            "{md}"
        );
    }

    #[test]
    fn report_writes_charts_and_links_them_from_the_readme() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("run.txt");
        std::fs::write(
            &input,
            "chatter\nrfs_put_r1 210 MB/s\nrfs_create_1 145 ops/s\nrfs_create_1_p50 400 us\n",
        )
        .unwrap();
        let readme = dir.path().join("README.md");
        std::fs::write(&readme, format!("# x\n{START}\nold\n{END}\nrest\n")).unwrap();
        let args = ReportArgs {
            inputs: vec![input],
            out_dir: dir.path().join("results"),
            stem: "d-abc".into(),
            readme: Some(readme.clone()),
        };
        run(&args).unwrap();
        for png in ["d-abc-throughput.png", "d-abc-latency.png"] {
            let bytes = std::fs::read(dir.path().join("results").join(png)).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        }
        let text = std::fs::read_to_string(&readme).unwrap();
        assert!(!text.contains("old"));
        assert!(
            text.contains("![throughput](results/d-abc-throughput.png)"),
            "{text}"
        );
        assert!(
            text.contains("![latency](results/d-abc-latency.png)"),
            "{text}"
        );
        assert!(text.ends_with(&format!("{END}\nrest\n")));
        let md = std::fs::read_to_string(dir.path().join("results/d-abc.md")).unwrap();
        assert!(md.contains("![latency](d-abc-latency.png)"), "{md}");
    }
}
