//! What Linux's `/proc` tells about the server: its peak resident memory, and how the CPU time of
//! the measured window split between the server, PostgreSQL, this program and everything else
//! (other work on the machine, which makes the figures low and noisy).

use std::collections::HashMap;

use anyhow::{bail, Context};
use tokio::time::Instant;

/// `VmHWM` (the peak resident set size) of a process, in MiB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) else {
        bail!("{path} has no VmHWM line");
    };
    let kib: f64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("cannot read {line:?} in {path}"))?;
    Ok(kib / 1024.0)
}

/// Cores kept busy during the window, on average.
#[derive(Debug, Clone, Copy)]
pub struct CpuSplit {
    /// By the server process.
    pub server: f64,
    /// By processes named `postgres` (a local PostgreSQL; 0 for a remote one).
    pub postgres: f64,
    /// By this program.
    pub loadgen: f64,
    /// By everything else: other work on the machine competing with the benchmark.
    pub other: f64,
    /// Cores of the machine.
    pub cores: usize,
}

#[derive(Debug, Clone)]
struct Snapshot {
    /// Ticks of all cores, busy and idle.
    total: u64,
    /// Busy ticks of all cores.
    busy: u64,
    cores: usize,
    server: Option<u64>,
    own: u64,
    /// Ticks of each `postgres` process.
    postgres: HashMap<u32, u64>,
}

/// The command name and the ticks spent (user + system) of a process, from `/proc/<pid>/stat`.
fn process_stat(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the other fields are counted
    // after the last closing parenthesis, where utime and stime are the 12th and 13th.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_ticks(pid: &str) -> Option<u64> {
    process_stat(pid).map(|(_, ticks)| ticks)
}

/// Every process named `postgres` and its ticks.
fn postgres_ticks() -> HashMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            match process_stat(&pid.to_string())? {
                (name, ticks) if name == "postgres" => Some((pid, ticks)),
                _ => None,
            }
        })
        .collect()
}

fn snapshot(server_pid: Option<u32>) -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let all: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let field = |i: usize| all.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let cores = lines.filter(|l| l.starts_with("cpu")).count();
    let server = match server_pid {
        Some(pid) => Some(process_ticks(&pid.to_string())?),
        None => None,
    };
    Some(Snapshot {
        total: busy + idle,
        busy,
        cores,
        server,
        own: process_ticks("self")?,
        postgres: postgres_ticks(),
    })
}

/// Samples at `from` and `until`; `None` when /proc cannot tell.
pub async fn sample_cpu(
    server_pid: Option<u32>,
    from: Instant,
    until: Instant,
) -> Option<CpuSplit> {
    tokio::time::sleep_until(from).await;
    let before = snapshot(server_pid)?;
    tokio::time::sleep_until(until).await;
    let after = snapshot(server_pid)?;
    let total = after.total.checked_sub(before.total)?;
    if total == 0 || after.cores == 0 {
        return None;
    }
    // Ticks of one core over the window: the total spread over the cores.
    let per_core = total as f64 / after.cores as f64;
    let cores = |ticks: u64| ticks as f64 / per_core;
    let busy = cores(after.busy.saturating_sub(before.busy));
    let server = match (before.server, after.server) {
        (Some(b), Some(a)) => cores(a.saturating_sub(b)),
        _ => 0.0,
    };
    let loadgen = cores(after.own.saturating_sub(before.own));
    // A backend started during the window spent all its ticks in it; one that ended is missed
    // here and lands in `other`.
    let postgres = cores(
        after
            .postgres
            .iter()
            .map(|(pid, &a)| a.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
            .sum(),
    );
    Some(CpuSplit {
        server,
        postgres,
        loadgen,
        other: (busy - server - loadgen - postgres).max(0.0),
        cores: after.cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() -> anyhow::Result<()> {
        if !std::path::Path::new("/proc/self/status").exists() {
            return Ok(());
        }
        assert!(peak_rss_mb(std::process::id())? > 0.0);
        assert!(process_ticks("self").is_some());
        assert!(process_stat("self").is_some_and(|(name, _)| !name.is_empty()));
        assert!(snapshot(Some(std::process::id())).is_some_and(|s| s.cores > 0));
        Ok(())
    }
}
