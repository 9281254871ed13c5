//! A CPU share as Lambda gives one, for the benchmarks: a function with M MB
//! of memory gets M / 1,769 of one vCPU, so at 128 MB about 7 % of a core.
//! Here that is a cgroup's CFS quota (cgroup v2 `cpu.max`, or v1
//! `cpu.cfs_quota_us`, whichever the machine has; sessions and CI run as
//! root), and the same cgroup counts the CPU its processes use, in
//! nanoseconds and including threads that have exited: `/proc/PID/stat`'s
//! user and system times tick at 100 Hz, too coarse for a cold start of a
//! few milliseconds.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The memory size at which Lambda gives a function one whole vCPU.
pub const FULL_VCPU_MB: u64 = 1769;
/// The CFS period the quota is a share of (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// The quota for a memory size, in microseconds of CPU per [`PERIOD_US`].
pub fn quota_us(memory_mb: u64) -> u64 {
    (memory_mb * PERIOD_US / FULL_VCPU_MB).max(1000)
}

enum Layout {
    /// cgroup v2: one directory with `cpu.max` and `cpu.stat`.
    V2 { dir: PathBuf },
    /// cgroup v1: the quota in the `cpu` hierarchy, the count in `cpuacct`
    /// (the same directory where the two are mounted together).
    V1 { cpu: PathBuf, cpuacct: PathBuf },
}

/// One cgroup for the processes a benchmark spawns, one at a time.
pub struct CpuShare {
    layout: Layout,
    /// Each hierarchy's `cgroup.procs`, opened before any spawn so that the
    /// child only has to write to it between fork and exec.
    procs: Vec<File>,
}

impl CpuShare {
    /// A new cgroup named `name` (under the root of each hierarchy), with no
    /// quota yet.
    pub fn create(name: &str) -> io::Result<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let v2_controllers = std::fs::read_to_string(root.join("cgroup.controllers"));
        let layout = match v2_controllers {
            Ok(controllers) if controllers.split_whitespace().any(|c| c == "cpu") => {
                // The cpu controller must be on for the root's children.
                let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu");
                Layout::V2 {
                    dir: root.join(name),
                }
            }
            _ => {
                let cpu = root.join("cpu").canonicalize()?.join(name);
                let cpuacct = root.join("cpuacct").canonicalize()?.join(name);
                Layout::V1 { cpu, cpuacct }
            }
        };
        let dirs = match &layout {
            Layout::V2 { dir } => vec![dir.clone()],
            Layout::V1 { cpu, cpuacct } if cpu == cpuacct => vec![cpu.clone()],
            Layout::V1 { cpu, cpuacct } => vec![cpu.clone(), cpuacct.clone()],
        };
        let mut procs = Vec::new();
        for dir in &dirs {
            if !dir.exists() {
                std::fs::create_dir(dir)?;
            }
            procs.push(
                OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))?,
            );
        }
        let share = Self { layout, procs };
        share.set_memory(None)?;
        Ok(share)
    }

    /// The CPU share of `memory_mb` of memory, or a whole machine for `None`.
    pub fn set_memory(&self, memory_mb: Option<u64>) -> io::Result<()> {
        match (&self.layout, memory_mb) {
            (Layout::V2 { dir }, Some(mb)) => {
                std::fs::write(dir.join("cpu.max"), format!("{} {PERIOD_US}", quota_us(mb)))
            }
            (Layout::V2 { dir }, None) => {
                std::fs::write(dir.join("cpu.max"), format!("max {PERIOD_US}"))
            }
            (Layout::V1 { cpu, .. }, quota) => {
                std::fs::write(cpu.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                let quota = quota.map_or(-1, |mb| quota_us(mb) as i64);
                std::fs::write(cpu.join("cpu.cfs_quota_us"), quota.to_string())
            }
        }
    }

    /// The CPU time the cgroup's processes have used so far, user and system.
    pub fn used(&self) -> Duration {
        let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        match &self.layout {
            Layout::V2 { dir } => {
                let stat = read(dir.join("cpu.stat"));
                let usec = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                Duration::from_micros(usec)
            }
            Layout::V1 { cpuacct, .. } => Duration::from_nanos(
                read(cpuacct.join("cpuacct.usage"))
                    .trim()
                    .parse()
                    .unwrap_or(0),
            ),
        }
    }

    /// Starts `command`'s process in the cgroup: it joins between fork and
    /// exec, so that loading the binary counts and runs under the quota.
    /// Joining a cgroup can take milliseconds (on v1 it waits for an RCU
    /// grace period), which no container start on AWS pays, so the child
    /// then waits for a go: the returned instant and CPU time used are
    /// taken after it joined, just before it executes its program.
    pub fn spawn(&self, mut command: Command) -> io::Result<(Child, Instant, Duration)> {
        let procs = self
            .procs
            .iter()
            .map(File::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        let (ready_reader, ready_writer) = io::pipe()?;
        let (go_reader, go_writer) = io::pipe()?;
        // SAFETY: between fork and exec the closure only calls write(2) and
        // read(2) on descriptors opened before the fork: no allocation, no
        // lock.
        unsafe {
            command.pre_exec(move || {
                for file in &procs {
                    // "0" is the writing process itself.
                    (&*file).write_all(b"0")?;
                }
                (&ready_writer).write_all(b"r")?;
                (&go_reader).read_exact(&mut [0])?;
                Ok(())
            });
        }
        // spawn() returns once the program is executing, so it runs beside
        // the go.
        let spawning = std::thread::spawn(move || command.spawn());
        let joined = (&ready_reader).read_exact(&mut [0]);
        let used = self.used();
        let go = Instant::now();
        if joined.is_ok() {
            (&go_writer).write_all(b"g")?;
        }
        drop(go_writer);
        let child = spawning
            .join()
            .map_err(|_| io::Error::other("the spawning thread panicked"))??;
        Ok((child, go, used))
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        let dirs = match &self.layout {
            Layout::V2 { dir } => vec![dir.clone()],
            Layout::V1 { cpu, cpuacct } => vec![cpu.clone(), cpuacct.clone()],
        };
        for dir in dirs {
            // Empty once its last process has been waited for.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_size_is_its_share_of_one_vcpu() {
        assert_eq!(quota_us(1769), 100_000);
        assert_eq!(quota_us(128), 7_235);
        assert_eq!(quota_us(1024), 57_885);
        // The kernel refuses a quota under 1 ms.
        assert_eq!(quota_us(1), 1000);
    }
}
