//! The machine while a benchmark runs: CPU time of the whole machine, of this
//! process and of the server (from `/proc`, Linux), the load average, and
//! servers spawned for a run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `/proc/<pid>/stat` counts CPU time in clock ticks: `sysconf(_SC_CLK_TCK)`,
/// which is 100 on every Linux we run on.
const TICKS_PER_SECOND: f64 = 100.0;

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "n/a".into())
}

/// The CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

/// (busy, total) ticks of all CPUs since boot.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
    if fields.len() < 8 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total - idle, total))
}

/// User + system ticks of a process since it started.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU used between [`CpuMeter::start`] and [`CpuMeter::stop`], in cores (1.0 = one
/// core busy all the time).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub machine: Option<f64>,
    pub bench: Option<f64>,
    pub server: Option<f64>,
    pub cpus: usize,
}

impl fmt::Display for CpuUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
        write!(f, "machine {} of {} cores busy · this bench process {}", show(self.machine), self.cpus, show(self.bench))?;
        if self.server.is_some() {
            write!(f, " · server {}", show(self.server))?;
        }
        Ok(())
    }
}

pub struct CpuMeter {
    started: Instant,
    machine: Option<(u64, u64)>,
    bench: Option<u64>,
    server: Option<(u32, Option<u64>)>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        CpuMeter {
            started: Instant::now(),
            machine: machine_ticks(),
            bench: process_ticks(std::process::id()),
            server: server_pid.map(|pid| (pid, process_ticks(pid))),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let cores = |before: Option<u64>, after: Option<u64>| Some(after?.checked_sub(before?)? as f64 / TICKS_PER_SECOND / seconds);
        let machine = match (self.machine, machine_ticks()) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => Some((busy1 - busy0) as f64 / (total1 - total0) as f64 * cpus() as f64),
            _ => None,
        };
        CpuUse {
            machine,
            bench: cores(self.bench, process_ticks(std::process::id())),
            server: self.server.and_then(|(pid, before)| cores(before, process_ticks(pid))),
            cpus: cpus(),
        }
    }
}

/// A free loopback port (the kernel's choice; released for the server to take).
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A `healthpay serve` this benchmark started (this very executable), its output
/// in a log file. Stopped with SIGTERM by [`Spawned::stop`]; killed if dropped.
pub struct Spawned {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Spawned {
    /// `healthpay serve --host 127.0.0.1 --port <free> <args…>`.
    ///
    /// A benchmark drives the server as one caller at tens of thousands of requests a
    /// second: its per-caller limits are set (through their environment variables, so
    /// that `args` may still override them, or pass `--no-rate-limits`) far above any
    /// rate this machine reaches. The limiter still runs, and its cost is measured.
    pub fn serve(args: &[String], env: &[(&str, String)], log: &Path) -> Result<Self, String> {
        let mut command = vec!["serve".to_string(), "--host".into(), "127.0.0.1".into()];
        command.extend(args.iter().cloned());
        let unreachable = 1_000_000_000.to_string();
        let mut env = env.to_vec();
        for name in ["HEALTHPAY_COMMAND_RATE_LIMIT", "HEALTHPAY_COMMAND_BURST", "HEALTHPAY_QUERY_RATE_LIMIT", "HEALTHPAY_QUERY_BURST"] {
            env.push((name, unreachable.clone()));
        }
        Self::start(&command, &env, log)
    }

    /// `healthpay bench ceiling-server --port <free>`: the trivial handler the ledger is
    /// compared with (see `ceiling`).
    pub fn ceiling(log: &Path) -> Result<Self, String> {
        Self::start(&["bench".into(), "ceiling-server".into()], &[], log)
    }

    /// This very executable with `args` and `--port <free>`.
    fn start(args: &[String], env: &[(&str, String)], log: &Path) -> Result<Self, String> {
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
        let out = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command.args(args).args(["--port", &port.to_string()]).stdin(Stdio::null()).stdout(out).stderr(err);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().map_err(|e| format!("starting healthpay {}: {e}", args.join(" ")))?;
        Ok(Spawned { child, port, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `Err` with the log's tail if the server has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the server exited ({status}); last lines of {}:\n{}", self.log.display(), self.log_tail(20))),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM (the server finishes requests in flight and stops), then SIGKILL
    /// after 15 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A directory of this run under the system's temp dir (on this machine, the
/// same ext4 disk as everything else — not a tmpfs — so fsync is real).
pub fn run_dir(kind: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("healthpay-bench-{kind}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Whether `url` names a loopback host (`127.x.x.x`, `localhost`, `[::1]`).
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().map(|h| format!("[{h}]")).unwrap_or_default()
    } else {
        rest.split(['/', ':']).next().unwrap_or_default().to_string()
    };
    host == "localhost" || host == "[::1]" || host.split('.').next() == Some("127") && host.split('.').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_pass() {
        for ok in ["http://127.0.0.1:3000", "http://localhost:4566/", "http://[::1]:80", "http://127.1.2.3"] {
            assert!(is_loopback_url(ok), "{ok}");
        }
        for bad in ["http://10.0.0.1:3000", "https://dynamodb.us-east-1.amazonaws.com", "http://127.0.0.1.example.com", "http://[::2]:1"] {
            assert!(!is_loopback_url(bad), "{bad}");
        }
    }

    #[test]
    fn this_process_has_cpu_time_and_the_machine_has_ticks() {
        if cfg!(target_os = "linux") {
            assert!(process_ticks(std::process::id()).is_some());
            assert!(machine_ticks().is_some_and(|(busy, total)| busy <= total));
        }
    }
}
