//! CPU time of processes from `/proc/PID/stat` (user + system), to report
//! a workload's CPU per operation summed over the processes that serve it.

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc/PID/stat`'s times (USER_HZ, 100 on
/// Linux everywhere rfs runs).
const TICKS_PER_S: f64 = 100.0;

/// User + system CPU seconds `pid` has used; `0` names this process.
pub fn seconds(pid: u32) -> Result<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse(&stat).with_context(|| format!("parsing {path}"))
}

/// utime + stime (fields 14 and 15) of a `stat` line; the command name
/// (field 2, in parentheses) may hold spaces, so fields count from its
/// closing parenthesis.
fn parse(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// CPU seconds of `pids` and this process together.
pub fn total(pids: &[u32]) -> Result<f64> {
    let mut sum = seconds(0)?;
    for &p in pids {
        sum += seconds(p)?;
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_count_from_the_command_names_closing_parenthesis() {
        let line = "42 (name with ) paren) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse(line), Some(3.0));
        assert!(seconds(0).unwrap() >= 0.0);
    }
}
