//! Process resource sampling: resident memory, CPU time and open file
//! descriptors, read from `/proc/self` on Linux. Elsewhere (or when `/proc`
//! is not mounted) every figure is `None` and no gauge is written: a missing
//! figure is better than a made-up zero.

use std::path::{Path, PathBuf};

/// The kernel's `USER_HZ`: `/proc/<pid>/stat` reports CPU times in these
/// ticks, and Linux fixes it at 100 on every architecture it exposes to user
/// space.
const USER_HZ: f64 = 100.0;

/// One sample of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceSample {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_memory_bytes: Option<u64>,
    /// User plus system CPU time consumed so far, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

impl ResourceSample {
    /// Writes the sample to the process gauges through the `metrics` facade
    /// (`stratum_process_resident_memory_bytes`,
    /// `stratum_process_cpu_seconds_total`, `stratum_process_open_fds`).
    pub fn export(&self) {
        if let Some(rss) = self.resident_memory_bytes {
            metrics::gauge!("stratum_process_resident_memory_bytes").set(rss as f64);
        }
        if let Some(cpu) = self.cpu_seconds {
            // A gauge, not a counter: `metrics` counters are integers and CPU
            // seconds are fractional. It only ever goes up.
            metrics::gauge!("stratum_process_cpu_seconds_total").set(cpu);
        }
        if let Some(fds) = self.open_fds {
            metrics::gauge!("stratum_process_open_fds").set(fds as f64);
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
    /// Reads from another `/proc/<pid>`-shaped folder (tests, other processes).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(file)).ok()
    }
}

impl ResourceSource for ProcSelf {
    fn sample(&self) -> ResourceSample {
        ResourceSample {
            resident_memory_bytes: self.read("status").as_deref().and_then(parse_vm_rss),
            cpu_seconds: self.read("stat").as_deref().and_then(parse_cpu_seconds),
            open_fds: count_entries(&self.root.join("fd")),
        }
    }
}

/// `VmRSS:    1234 kB` from `/proc/<pid>/status`, in bytes.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
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

/// utime + stime from `/proc/<pid>/stat`, in seconds. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, so utime (14) and stime (15) sit
    // at indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
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
    fn parses_vm_rss() {
        let status = "Name:\tcat\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(1536 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: lots kB\n"), None);
    }

    #[test]
    fn parses_cpu_seconds_with_hostile_command_names() {
        // The command name holds spaces and a ')' : only the last ')' counts.
        let stat = "4242 (my) weird cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 200";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_cpu_seconds("4242 (short) S 1"), None);
        assert_eq!(parse_cpu_seconds("garbage"), None);
    }

    #[test]
    fn missing_proc_gives_none_not_zero() {
        let sample = ProcSelf::at("/nonexistent/stratum/proc").sample();
        assert_eq!(sample, ResourceSample::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_sample_sees_a_new_file_descriptor() {
        let source = ProcSelf::default();
        let before = source.sample();
        assert!(before.resident_memory_bytes.unwrap() > 1024 * 1024);
        assert!(before.cpu_seconds.unwrap() >= 0.0);
        // Hold 16 extra descriptors: the count must rise by at least that
        // much minus whatever other test threads closed meanwhile.
        let files: Vec<_> = (0..16)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let after = source.sample();
        drop(files);
        assert!(after.open_fds.unwrap() >= 16, "{after:?}");
    }
}
