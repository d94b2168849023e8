//! Process resource sampling: CPU time, resident and virtual memory, open
//! and maximum file descriptors and the start time, read from `/proc/self`
//! on Linux and served under the standard `process_*` names every
//! Prometheus client library uses. Elsewhere (or when `/proc` is not
//! mounted) every figure is `None` and its series is left out: a missing
//! figure is better than a made-up zero.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The kernel's `USER_HZ`: `/proc/<pid>/stat` reports CPU times in these
/// ticks, and Linux fixes it at 100 on every architecture it exposes to user
/// space.
const USER_HZ: f64 = 100.0;

/// One sample of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct ResourceSample {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size in bytes (`VmSize`).
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time consumed so far, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`Max open files`).
    pub max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ResourceSample {
    /// Appends the sample in the Prometheus text format under the standard
    /// names (`process_cpu_seconds_total` as a counter, the others as
    /// gauges), each with its `# HELP` and `# TYPE` line. A figure that could
    /// not be read is left out.
    ///
    /// ```
    /// use stratum_monitor::ResourceSample;
    ///
    /// let mut sample = ResourceSample::default();
    /// sample.cpu_seconds = Some(1.25);
    /// let mut text = String::new();
    /// sample.render_prometheus(&mut text);
    /// assert!(text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n"));
    /// assert!(!text.contains("process_open_fds"));
    /// ```
    pub fn render_prometheus(&self, out: &mut String) {
        let families: [(&str, &str, &str, Option<f64>); 6] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_memory_bytes.map(|b| b as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_memory_bytes.map(|b| b as f64),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                self.max_fds.map(|n| n as f64),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ];
        for (name, kind, help, value) in families {
            if let Some(value) = value {
                // Writing to a String cannot fail.
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
        }
    }
}

/// Where resource figures come from.
pub trait ResourceSource: Send + Sync {
    /// Takes one sample; figures that cannot be read are `None`.
    fn sample(&self) -> ResourceSample;
}

/// The production source: `/proc/self` (Linux).
///
/// ```
/// use stratum_monitor::{ProcSelf, ResourceSource};
///
/// let sample = ProcSelf::default().sample();
/// if cfg!(target_os = "linux") {
///     assert!(sample.resident_memory_bytes.unwrap() > 0);
///     assert!(sample.open_fds.unwrap() >= 3);
///     assert!(sample.start_time_seconds.unwrap() > 1.6e9);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ProcSelf {
    root: PathBuf,
}

impl Default for ProcSelf {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/proc/self"),
        }
    }
}

impl ProcSelf {
    /// Reads from another `/proc/<pid>`-shaped folder (tests, other
    /// processes); the boot time comes from `stat` in its parent folder.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(file)).ok()
    }
}

impl ResourceSource for ProcSelf {
    fn sample(&self) -> ResourceSample {
        let status = self.read("status");
        let stat = self.read("stat");
        let boot = std::fs::read_to_string(self.root.join("../stat"))
            .ok()
            .as_deref()
            .and_then(parse_boot_time);
        ResourceSample {
            resident_memory_bytes: status.as_deref().and_then(|s| parse_status_kb(s, "VmRSS:")),
            virtual_memory_bytes: status
                .as_deref()
                .and_then(|s| parse_status_kb(s, "VmSize:")),
            cpu_seconds: stat.as_deref().and_then(parse_cpu_seconds),
            open_fds: count_entries(&self.root.join("fd")),
            max_fds: self.read("limits").as_deref().and_then(parse_max_fds),
            start_time_seconds: stat
                .as_deref()
                .and_then(parse_start_ticks)
                .zip(boot)
                .map(|(ticks, boot)| boot as f64 + ticks as f64 / USER_HZ),
        }
    }
}

/// `VmRSS:    1234 kB` (or another `key`) from `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("kB");
    let factor = match unit {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        "B" => 1,
        _ => return None,
    };
    value.checked_mul(factor)
}

/// The fields of `/proc/<pid>/stat` after the command name: the name (field
/// 2) may hold spaces and parentheses, so fields are counted after the last
/// `)`; index 0 is the state (field 3).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().collect())
}

/// utime + stime from `/proc/<pid>/stat`, in seconds.
pub(crate) fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let fields = stat_fields(stat)?;
    // utime (14) and stime (15) sit at indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// starttime (field 22) from `/proc/<pid>/stat`: ticks after boot.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    stat_fields(stat)?.get(19)?.parse().ok()
}

/// `btime` from `/proc/stat`: the boot time in seconds since the epoch.
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of `Max open files` from `/proc/<pid>/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn count_entries(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    // The directory handle being read is itself an open descriptor; it is
    // counted, as Prometheus's own process collectors do.
    Some(entries.filter(|e| e.is_ok()).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_and_size() {
        let status = "Name:\tcat\nVmPeak:\t  9000 kB\nVmSize:\t    8000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(1536 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize:"), Some(8000 * 1024));
        assert_eq!(parse_status_kb("Name: x\n", "VmRSS:"), None);
        assert_eq!(parse_status_kb("VmRSS: lots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn parses_cpu_seconds_and_start_with_hostile_command_names() {
        // The command name holds spaces and a ')' : only the last ')' counts.
        let stat = "4242 (my) weird cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 12345 1000 200";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_start_ticks(stat), Some(12345));
        assert_eq!(parse_cpu_seconds("4242 (short) S 1"), None);
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn parses_limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63457                63457                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn missing_proc_gives_none_not_zero() {
        let sample = ProcSelf::at("/nonexistent/stratum/proc").sample();
        assert_eq!(sample, ResourceSample::default());
        let mut text = String::new();
        sample.render_prometheus(&mut text);
        assert_eq!(text, "");
    }

    /// The descriptor count is compared with the sample taken just before
    /// 16 files were opened: it must have risen by 16. Other test threads
    /// may close descriptors in between, so a try where the rise falls short
    /// is repeated; a count that does not follow the process fails every try.
    #[cfg(target_os = "linux")]
    #[test]
    fn live_sample_sees_a_new_file_descriptor() {
        let source = ProcSelf::default();
        let mut rises = Vec::new();
        for _ in 0..20 {
            let before = source.sample();
            assert!(before.resident_memory_bytes.unwrap() > 1024 * 1024);
            assert!(before.cpu_seconds.unwrap() >= 0.0);
            let files: Vec<_> = (0..16)
                .map(|_| std::fs::File::open("/proc/self/status").unwrap())
                .collect();
            let after = source.sample();
            drop(files);
            let rise = after.open_fds.unwrap() as i64 - before.open_fds.unwrap() as i64;
            if rise >= 16 {
                return;
            }
            rises.push(rise);
        }
        panic!("the open descriptor count never rose by 16: rises {rises:?}");
    }
}
