//! `rfs-bench log-fsync` (also part of `limits`): what one raft-log batch
//! costs on the filesystem of the name dirs, one `write` and one
//! `fdatasync` of a log file, for three ways of laying the file out:
//!
//! - appending ([`Strategy::Append`]): a write at the end of a growing file
//!   (`O_APPEND`, as `namenode/src/raft/log_file.rs` writes `raft.log`),
//!   so every `fdatasync` also commits the new size to the journal;
//! - preallocated ([`Strategy::Preallocated`]): a segment `fallocate`d
//!   first, then written in place; ext4 hands out unwritten extents, so the
//!   first write to each block still converts its extent (metadata) before
//!   the `fdatasync` returns. A full segment rolls to a new one,
//!   `fallocate`d and fsynced at that moment (counted in the wall time, not
//!   in the latencies);
//! - zero-filled ([`Strategy::ZeroFilled`]): a segment written with zeros
//!   and fsynced once first, then overwritten in place: the size and the
//!   extents never change, so `fdatasync` flushes data only. A full
//!   segment is recycled from its start (still written blocks, the same
//!   state), as WAL segments are recycled.
//!
//! Each cell runs 1 or 3 writers (3: nn1, nn2 and the witness on one
//! machine), each on its own file in the same directory, each looping
//! write + `fdatasync` of one record of 512 B or 16 KiB for a fixed time,
//! in slices that take turns with the other layouts' (each slice on new
//! files), so a change in the machine's load (another build starting)
//! falls on every layout alike.
//! It prints `log_fsync_<strategy>_<writers>w_<record>_p50 … us` (and
//! `_p90`, `_p99`: the `fdatasync` call alone), `…_syncs_per_s` (all
//! writers together) and `…_syncs_per_s_writer` (their mean), then a
//! Markdown table and a **Finding** line, which `rfs-bench report`
//! rebuilds from the figures ([`markdown`], [`rows_json`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::RngCore;
use serde_json::json;

use crate::figures::{latency_figures, Figure};

#[derive(clap::Args, Clone, Debug)]
pub struct LogFsyncArgs {
    /// Directory on the filesystem of the namenodes' name dirs, for the
    /// raft-log fsync probe [default: the disk probes' scratch directory].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Seconds each cell of the raft-log fsync probe runs in all (12
    /// cells), in --log-rounds slices.
    #[arg(long, default_value_t = 2.0)]
    pub log_seconds: f64,
    /// Slices each cell's time is cut into, the three layouts' slices
    /// taking turns, so a change in the machine's load falls on each
    /// layout alike.
    #[arg(long, default_value_t = 4)]
    pub log_rounds: u32,
    /// Segment size of the preallocated and zero-filled raft-log layouts,
    /// in MiB.
    #[arg(long, default_value_t = 64)]
    pub log_segment_mib: u64,
}

/// How the log file is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Append,
    Preallocated,
    ZeroFilled,
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [
        Strategy::Append,
        Strategy::Preallocated,
        Strategy::ZeroFilled,
    ];

    /// The strategy's part of a figure name.
    pub fn key(self) -> &'static str {
        match self {
            Strategy::Append => "append",
            Strategy::Preallocated => "prealloc",
            Strategy::ZeroFilled => "zeroed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Strategy::Append => "appending",
            Strategy::Preallocated => "preallocated (fallocate)",
            Strategy::ZeroFilled => "zero-filled",
        }
    }
}

/// Concurrent writers: one namenode alone, and nn1, nn2 and the witness
/// on one machine.
pub const WRITERS: [usize; 2] = [1, 3];
/// Record sizes: a small batch (a create or two), and a large one.
pub const RECORDS: [usize; 2] = [512, 16 << 10];

/// `log_fsync_<strategy>_<writers>w_<record>`, e.g.
/// `log_fsync_zeroed_3w_16k`.
pub fn figure_stem(s: Strategy, writers: usize, record: usize) -> String {
    let record = if record.is_multiple_of(1024) {
        format!("{}k", record / 1024)
    } else {
        format!("{record}b")
    };
    format!("log_fsync_{}_{writers}w_{record}", s.key())
}

fn record_label(record: usize) -> String {
    if record.is_multiple_of(1024) {
        format!("{} KiB", record / 1024)
    } else {
        format!("{record} B")
    }
}

/// Runs the probe alone (`rfs-bench log-fsync`), in `--log-dir` or else
/// `default_dir`.
pub fn run(args: &LogFsyncArgs, default_dir: &Path) -> Result<()> {
    let dir = args.log_dir.as_deref().unwrap_or(default_dir);
    let figures = probe(args, dir, |f| println!("{}", f.line()))?;
    let figures: BTreeMap<String, Figure> =
        figures.into_iter().map(|f| (f.name.clone(), f)).collect();
    if let Some(md) = markdown(&figures) {
        println!("\n{md}");
    }
    Ok(())
}

/// Measures every cell in `dir` (created if needed; what the probe writes
/// is removed after each cell), first printing a `# log-fsync` line that
/// says where, and calling `show` with each figure as soon as it is known.
pub fn probe(
    args: &LogFsyncArgs,
    dir: &Path,
    mut show: impl FnMut(&Figure),
) -> Result<Vec<Figure>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let rounds = args.log_rounds.max(1);
    let slice = Duration::from_secs_f64(args.log_seconds.max(0.01) / f64::from(rounds));
    let segment = args.log_segment_mib.max(1) << 20;
    // The load average says whether other work shared the CPUs: a
    // writer woken from fdatasync waits for a CPU like anyone else.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "# log-fsync {}: {} s per cell in {rounds} slices, {} MiB segments, on {}, \
         load average {load} at the start",
        dir.display(),
        args.log_seconds,
        args.log_segment_mib.max(1),
        filesystem(dir),
    );
    let mut all = Vec::new();
    for &record in &RECORDS {
        for &writers in &WRITERS {
            let mut cells: Vec<Option<Cell>> = Strategy::ALL.iter().map(|_| None).collect();
            for round in 0..rounds as usize {
                // Each round starts with the next layout, so none always
                // runs first or right after another's preparation.
                for k in 0..Strategy::ALL.len() {
                    let i = (k + round) % Strategy::ALL.len();
                    let c = run_cell(dir, Strategy::ALL[i], writers, record, slice, segment)?;
                    match &mut cells[i] {
                        Some(cell) => cell.add(c),
                        None => cells[i] = Some(c),
                    }
                }
            }
            for cell in cells.into_iter().flatten() {
                for f in cell.figures() {
                    show(&f);
                    all.push(f);
                }
            }
        }
    }
    Ok(all)
}

/// `FSTYPE SOURCE` of the filesystem holding `dir`, as `findmnt` names
/// them.
fn filesystem(dir: &Path) -> String {
    let findmnt = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,SOURCE", "--target"])
        .arg(dir)
        .output();
    if let Ok(o) = findmnt {
        let s = String::from_utf8_lossy(&o.stdout);
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if o.status.success() && !s.is_empty() {
            return s;
        }
    }
    "an unknown filesystem".into()
}

/// What one cell measured.
pub struct Cell {
    pub strategy: Strategy,
    pub writers: usize,
    pub record: usize,
    /// Every `fdatasync`, all writers together.
    pub latencies: Vec<Duration>,
    /// Writes + `fdatasync`s completed, all writers together.
    pub syncs: u64,
    /// From the writers' common start to the last one's end (summed over
    /// the slices).
    pub elapsed: Duration,
    /// Times a writer reached the end of its segment (rolled or recycled).
    pub segment_ends: u64,
}

impl Cell {
    /// `other`, a later slice of the same cell, added to this one.
    pub fn add(&mut self, other: Cell) {
        self.latencies.extend(other.latencies);
        self.syncs += other.syncs;
        self.elapsed += other.elapsed;
        self.segment_ends += other.segment_ends;
    }

    pub fn figures(&self) -> Vec<Figure> {
        let stem = figure_stem(self.strategy, self.writers, self.record);
        let mut out = latency_figures(&stem, self.latencies.clone());
        let total = self.syncs as f64 / self.elapsed.as_secs_f64().max(1e-9);
        out.push(Figure::new(format!("{stem}_syncs_per_s"), total, "syncs/s"));
        out.push(Figure::new(
            format!("{stem}_syncs_per_s_writer"),
            total / self.writers.max(1) as f64,
            "syncs/s",
        ));
        if self.strategy != Strategy::Append {
            out.push(Figure::new(
                format!("{stem}_segment_ends"),
                self.segment_ends as f64,
                "segments",
            ));
        }
        out
    }
}

/// `writers` threads, each on its own file laid out as `strategy`, each
/// looping one write of `record` bytes and one `fdatasync` for `seconds`.
pub fn run_cell(
    dir: &Path,
    strategy: Strategy,
    writers: usize,
    record: usize,
    seconds: Duration,
    segment: u64,
) -> Result<Cell> {
    let cell_dir = dir.join("log-fsync");
    if cell_dir.exists() {
        std::fs::remove_dir_all(&cell_dir)?;
    }
    std::fs::create_dir_all(&cell_dir)?;
    let mut files = Vec::new();
    for w in 0..writers {
        files.push(prepare(strategy, &segment_path(&cell_dir, w, 0), segment)?);
    }
    // Nothing the preparation (or the previous cell's removal) left dirty
    // is flushed inside the measurement.
    syncfs(&cell_dir)?;
    let start = Barrier::new(writers);
    let outs: Vec<Result<WriterOut>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .into_iter()
            .enumerate()
            .map(|(w, file)| {
                let (start, cell_dir) = (&start, &cell_dir);
                s.spawn(move || {
                    let mut buf = vec![0u8; record];
                    rand::thread_rng().fill_bytes(&mut buf);
                    start.wait();
                    writer(strategy, cell_dir, w, file, &buf, segment, seconds)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("log-fsync writer panicked"))
            .collect()
    });
    std::fs::remove_dir_all(&cell_dir)?;
    let mut cell = Cell {
        strategy,
        writers,
        record,
        latencies: Vec::new(),
        syncs: 0,
        elapsed: Duration::ZERO,
        segment_ends: 0,
    };
    for out in outs {
        let out = out.with_context(|| figure_stem(strategy, writers, record))?;
        cell.syncs += out.latencies.len() as u64;
        cell.latencies.extend(out.latencies);
        cell.elapsed = cell.elapsed.max(out.elapsed);
        cell.segment_ends += out.segment_ends;
    }
    Ok(cell)
}

fn segment_path(dir: &Path, writer: usize, segment: u64) -> PathBuf {
    dir.join(format!("writer{writer}-{segment:06}.log"))
}

/// A new file at `path` (which must not exist), laid out as `strategy`,
/// with its layout durable.
fn prepare(strategy: Strategy, path: &Path, segment: u64) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.create_new(true);
    match strategy {
        // As `LogFile` opens `raft.log`: every write lands at the end.
        Strategy::Append => opts.append(true),
        _ => opts.write(true),
    };
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    match strategy {
        Strategy::Append => {}
        Strategy::Preallocated => {
            // SAFETY: fallocate on an fd we own; mode 0 allocates (as
            // unwritten extents on ext4) and extends the size.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, segment as libc::off_t) };
            if r != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("fallocate {}", path.display()));
            }
        }
        Strategy::ZeroFilled => {
            let zeros = vec![0u8; 1 << 20];
            let mut left = segment;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
    }
    f.sync_all()?;
    Ok(f)
}

fn syncfs(dir: &Path) -> Result<()> {
    let d = File::open(dir)?;
    // SAFETY: syncfs on an fd we own.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("syncfs");
    }
    Ok(())
}

struct WriterOut {
    /// One per write + `fdatasync` done.
    latencies: Vec<Duration>,
    elapsed: Duration,
    segment_ends: u64,
}

/// One writer's loop: a write of `record` then an `fdatasync`, timed,
/// until `seconds` have passed.
fn writer(
    strategy: Strategy,
    dir: &Path,
    w: usize,
    mut file: File,
    record: &[u8],
    segment: u64,
    seconds: Duration,
) -> Result<WriterOut> {
    let len = record.len() as u64;
    if strategy != Strategy::Append && len > segment {
        bail!("a {len}-byte record does not fit a {segment}-byte segment");
    }
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut segment_ends = 0u64;
    let mut at = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < seconds {
        match strategy {
            Strategy::Append => file.write_all(record)?,
            Strategy::Preallocated | Strategy::ZeroFilled => {
                if at + len > segment {
                    segment_ends += 1;
                    at = 0;
                    if strategy == Strategy::Preallocated {
                        file = prepare(strategy, &segment_path(dir, w, segment_ends), segment)?;
                    }
                }
                file.write_all_at(record, at)?;
                at += len;
            }
        }
        let t = Instant::now();
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    Ok(WriterOut {
        latencies,
        elapsed: t0.elapsed(),
        segment_ends,
    })
}

fn value(figures: &BTreeMap<String, Figure>, name: &str) -> Option<f64> {
    figures.get(name).map(|f| f.value)
}

/// One table row, from the figures of one cell.
struct Row {
    strategy: Strategy,
    writers: usize,
    record: usize,
    p50: Option<f64>,
    p99: Option<f64>,
    per_writer: Option<f64>,
    total: Option<f64>,
    over_append: Option<f64>,
    segment_ends: Option<f64>,
}

fn rows(figures: &BTreeMap<String, Figure>) -> Vec<Row> {
    let mut out = Vec::new();
    for &record in &RECORDS {
        for &writers in &WRITERS {
            let append = value(
                figures,
                &format!(
                    "{}_syncs_per_s",
                    figure_stem(Strategy::Append, writers, record)
                ),
            );
            for s in Strategy::ALL {
                let stem = figure_stem(s, writers, record);
                let total = value(figures, &format!("{stem}_syncs_per_s"));
                if total.is_none() {
                    continue;
                }
                out.push(Row {
                    strategy: s,
                    writers,
                    record,
                    p50: value(figures, &format!("{stem}_p50")),
                    p99: value(figures, &format!("{stem}_p99")),
                    per_writer: value(figures, &format!("{stem}_syncs_per_s_writer")),
                    total,
                    over_append: match (total, append) {
                        (Some(t), Some(a)) if a > 0.0 => Some(t / a),
                        _ => None,
                    },
                    segment_ends: value(figures, &format!("{stem}_segment_ends")),
                });
            }
        }
    }
    out
}

/// The probe's table and its finding, from the figures; `None` when they
/// hold no log-fsync figure.
pub fn markdown(figures: &BTreeMap<String, Figure>) -> Option<String> {
    let rows = rows(figures);
    if rows.is_empty() {
        return None;
    }
    let cell = |v: Option<f64>, prec: usize| v.map_or("—".into(), |v| format!("{v:.prec$}"));
    let mut out = String::from(
        "| layout | writers | record | fdatasync p50 µs | fdatasync p99 µs | syncs/s per writer | syncs/s total | total / appending | segment ends |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.strategy.label(),
            r.writers,
            record_label(r.record),
            cell(r.p50, 0),
            cell(r.p99, 0),
            cell(r.per_writer, 0),
            cell(r.total, 0),
            r.over_append.map_or("—".into(), |v| format!("{v:.2}×")),
            cell(r.segment_ends, 0),
        ));
    }
    if let Some(f) = finding(figures) {
        out.push_str(&format!("\n{f}\n"));
    }
    Some(out)
}

/// Layouts within this fraction of the fastest one's syncs/s are named
/// beside it: closer than that, one run on a shared machine does not
/// rank them.
const TIE: f64 = 0.05;

/// The fastest layout (most syncs/s, all writers together) at 3 writers,
/// per record size, its ratio to appending, and any layout within [`TIE`]
/// of it; `None` without a figure at 3 writers.
pub fn finding(figures: &BTreeMap<String, Figure>) -> Option<String> {
    let rows = rows(figures);
    let total = |r: &Row| r.total.unwrap_or(0.0);
    let ranked: Vec<Vec<&Row>> = RECORDS
        .iter()
        .map(|&record| {
            let mut at3: Vec<&Row> = rows
                .iter()
                .filter(|r| r.writers == 3 && r.record == record)
                .collect();
            at3.sort_by(|a, b| total(b).total_cmp(&total(a)));
            at3
        })
        .filter(|at3| !at3.is_empty())
        .collect();
    let first = ranked.first()?[0];
    let over_append = |r: &Row| {
        r.over_append.map_or("appending not measured".into(), |x| {
            format!("{x:.2}× appending")
        })
    };
    let each = |at3: &[&Row]| {
        let best = at3[0];
        let p99 = best
            .p99
            .map_or(String::new(), |p| format!(", fdatasync p99 {p:.0} µs"));
        let close: Vec<String> = at3[1..]
            .iter()
            .filter(|r| total(r) >= (1.0 - TIE) * total(best))
            .map(|r| {
                format!(
                    "{} within {:.0}% ({})",
                    r.strategy.label(),
                    TIE * 100.0,
                    over_append(r)
                )
            })
            .collect();
        let close = if close.is_empty() {
            String::new()
        } else {
            format!("; {}", close.join(", "))
        };
        format!(
            "{}: {} at {:.0} syncs/s, {}{p99}{close}",
            record_label(best.record),
            best.strategy.label(),
            total(best),
            over_append(best),
        )
    };
    let lead = if ranked.iter().all(|at3| at3[0].strategy == first.strategy) {
        format!(
            "{} is the fastest layout with every record size",
            first.strategy.label()
        )
    } else {
        "the fastest layout differs by record size".into()
    };
    let parts: Vec<String> = ranked.iter().map(|at3| each(at3)).collect();
    Some(format!(
        "**Finding:** raft log, 3 concurrent writers (nn1, nn2, witness) on this filesystem: \
         {lead}. {}.",
        parts.join(". ")
    ))
}

/// The table's rows as JSON, and the finding.
pub fn rows_json(figures: &BTreeMap<String, Figure>) -> serde_json::Value {
    let rows: Vec<_> = rows(figures)
        .iter()
        .map(|r| {
            json!({
                "layout": r.strategy.key(),
                "writers": r.writers,
                "record_bytes": r.record,
                "fdatasync_p50_us": r.p50,
                "fdatasync_p99_us": r.p99,
                "syncs_per_s_writer": r.per_writer,
                "syncs_per_s": r.total,
                "over_append": r.over_append,
                "segment_ends": r.segment_ends,
            })
        })
        .collect();
    json!({ "rows": rows, "finding": finding(figures) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::by_name;

    #[test]
    fn figure_names_are_figure_lines() {
        assert_eq!(
            figure_stem(Strategy::ZeroFilled, 3, 16 << 10),
            "log_fsync_zeroed_3w_16k"
        );
        assert_eq!(
            figure_stem(Strategy::Append, 1, 512),
            "log_fsync_append_1w_512b"
        );
        let cell = Cell {
            strategy: Strategy::Preallocated,
            writers: 3,
            record: 512,
            latencies: (1..=100).map(Duration::from_micros).collect(),
            syncs: 300,
            elapsed: Duration::from_secs(2),
            segment_ends: 2,
        };
        let lines: Vec<String> = cell.figures().iter().map(Figure::line).collect();
        assert_eq!(
            lines,
            [
                "log_fsync_prealloc_3w_512b_p50 50.0 us",
                "log_fsync_prealloc_3w_512b_p90 90.0 us",
                "log_fsync_prealloc_3w_512b_p99 99.0 us",
                "log_fsync_prealloc_3w_512b_syncs_per_s 150.0 syncs/s",
                "log_fsync_prealloc_3w_512b_syncs_per_s_writer 50.0 syncs/s",
                "log_fsync_prealloc_3w_512b_segment_ends 2.0 segments",
            ]
        );
        assert!(lines.iter().all(|l| Figure::parse(l).is_some()));
    }

    #[test]
    fn every_layout_writes_syncs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // 8 records of 512 B per segment: the segments fill, so the
        // preallocated layout rolls and the zero-filled one recycles.
        for s in Strategy::ALL {
            for writers in [1, 3] {
                let cell =
                    run_cell(dir.path(), s, writers, 512, Duration::from_millis(50), 4096).unwrap();
                assert_eq!(cell.syncs, cell.latencies.len() as u64);
                assert!(cell.syncs >= writers as u64, "{s:?} {writers}");
                if s != Strategy::Append && cell.syncs > 8 * writers as u64 {
                    assert!(cell.segment_ends > 0, "{s:?} {writers}");
                }
                assert!(!dir.path().join("log-fsync").exists());
            }
        }
        let e = run_cell(
            dir.path(),
            Strategy::ZeroFilled,
            1,
            8192,
            Duration::from_millis(10),
            4096,
        );
        assert!(e.is_err(), "a record larger than a segment is refused");
    }

    #[test]
    fn the_probe_measures_every_cell_in_slices() {
        let dir = tempfile::tempdir().unwrap();
        let args = LogFsyncArgs {
            log_dir: None,
            log_seconds: 0.06,
            log_rounds: 2,
            log_segment_mib: 1,
        };
        let mut shown = 0;
        let figures = probe(&args, dir.path(), |_| shown += 1).unwrap();
        // Per record size and writer count: 5 figures of appending, 6 of
        // each segment layout (with their segment ends).
        assert_eq!(figures.len(), 2 * 2 * (5 + 6 + 6));
        assert_eq!(shown, figures.len());
        let figures: BTreeMap<String, Figure> =
            figures.into_iter().map(|f| (f.name.clone(), f)).collect();
        let total = &figures["log_fsync_zeroed_3w_16k_syncs_per_s"];
        let each = &figures["log_fsync_zeroed_3w_16k_syncs_per_s_writer"];
        assert!(total.value > 0.0);
        assert!((total.value / 3.0 - each.value).abs() < 0.01 * total.value);
        assert_eq!(rows(&figures).len(), 12);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    const RUN: &str = "\
        log_fsync_append_3w_512b_p50 400 us\nlog_fsync_append_3w_512b_p99 900 us\n\
        log_fsync_append_3w_512b_syncs_per_s 1000 syncs/s\n\
        log_fsync_append_3w_512b_syncs_per_s_writer 333.3 syncs/s\n\
        log_fsync_prealloc_3w_512b_syncs_per_s 1500 syncs/s\n\
        log_fsync_prealloc_3w_512b_segment_ends 0 segments\n\
        log_fsync_zeroed_3w_512b_p50 150 us\nlog_fsync_zeroed_3w_512b_p99 600 us\n\
        log_fsync_zeroed_3w_512b_syncs_per_s 2500 syncs/s\n\
        log_fsync_append_3w_16k_syncs_per_s 800 syncs/s\n\
        log_fsync_zeroed_3w_16k_p99 700 us\n\
        log_fsync_zeroed_3w_16k_syncs_per_s 1600 syncs/s\n\
        log_fsync_append_1w_16k_syncs_per_s 900 syncs/s\n";

    #[test]
    fn table_rows_and_ratios_to_appending() {
        let md = markdown(&by_name(RUN)).unwrap();
        assert!(
            md.contains("| appending | 3 | 512 B | 400 | 900 | 333 | 1000 | 1.00× | — |"),
            "{md}"
        );
        assert!(
            md.contains("| preallocated (fallocate) | 3 | 512 B | — | — | — | 1500 | 1.50× | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| zero-filled | 3 | 16 KiB | — | 700 | — | 1600 | 2.00× | — |"),
            "{md}"
        );
        assert!(md.contains("| appending | 1 | 16 KiB |"), "{md}");
        assert!(markdown(&by_name("rfs_put_r1 1 MB/s\n")).is_none());
        let js = rows_json(&by_name(RUN));
        assert_eq!(js["rows"].as_array().unwrap().len(), 6);
        assert_eq!(js["rows"][2]["layout"], "zeroed");
        assert_eq!(js["rows"][2]["over_append"], 2.5);
    }

    #[test]
    fn the_finding_names_the_fastest_layout_at_three_writers() {
        let f = finding(&by_name(RUN)).unwrap();
        assert_eq!(
            f,
            "**Finding:** raft log, 3 concurrent writers (nn1, nn2, witness) on this \
             filesystem: zero-filled is the fastest layout with every record size. 512 B: \
             zero-filled at 2500 syncs/s, 2.50× appending, fdatasync p99 600 µs. 16 KiB: \
             zero-filled at 1600 syncs/s, 2.00× appending, fdatasync p99 700 µs."
        );
        // A different winner per record size names each.
        let run = RUN.replace(
            "log_fsync_prealloc_3w_512b_syncs_per_s 1500",
            "log_fsync_prealloc_3w_512b_syncs_per_s 3000",
        );
        let f = finding(&by_name(&run)).unwrap();
        assert!(
            f.contains(
                "the fastest layout differs by record size. 512 B: preallocated (fallocate) \
                 at 3000 syncs/s, 3.00× appending. 16 KiB: zero-filled at 1600"
            ),
            "{f}"
        );
        // Within 5% of the fastest: named beside it.
        let run = RUN.replace(
            "log_fsync_prealloc_3w_512b_syncs_per_s 1500",
            "log_fsync_prealloc_3w_512b_syncs_per_s 2400",
        );
        let f = finding(&by_name(&run)).unwrap();
        assert!(
            f.contains(
                "512 B: zero-filled at 2500 syncs/s, 2.50× appending, fdatasync p99 600 µs; \
                 preallocated (fallocate) within 5% (2.40× appending). 16 KiB:"
            ),
            "{f}"
        );
        assert!(finding(&by_name("log_fsync_append_1w_16k_syncs_per_s 9 syncs/s\n")).is_none());
    }
}
