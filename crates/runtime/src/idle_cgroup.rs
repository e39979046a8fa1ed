//! An idle cgroup for the `SCHED_IDLE` runtimes (`query`, `compact`), so that they are
//! idle to the whole machine, not only to this process's other threads (Linux, cgroup v1
//! `cpu` controller; `runtime.idle_cgroup`).
//!
//! Why (issue 24, `docs/benchmarks.md`): the kernel schedules groups before threads.
//! With autogroup on (`kernel.sched_autogroup_enabled`, the default of many
//! distributions) every process started from one session shares one group, and under
//! systemd every service has its own cgroup. `SCHED_IDLE` only ranks a thread against
//! the other threads of its group: against everything outside it, the group as a whole
//! competes as one nice-0 entity, busy or not. In the interference benchmark the block
//! layer's high-priority worker (`kworker/N:0H`), which the WAL's `fdatasync` waits on,
//! was passed over for up to 8 ms while a `SCHED_IDLE` query thread of the server ran.
//! A cgroup with `cpu.idle = 1` is idle at the level where that choice is made.
//!
//! One cgroup per process, `bulkhead-<pid>`, is made next to the process's own `cpu`
//! cgroup the first time a runtime asks for it, and threads move themselves into it as
//! they start. Nothing removes it while the process lives (its threads may outlive a
//! `Runtimes`); the next process to create one removes those of processes that are gone.
//! Without permission (not root, no delegation), or on cgroup v2, the threads stay where
//! they are with `SCHED_IDLE` alone, and one warning says why.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The process's idle cgroup, created on first use; or why there is none.
pub(crate) fn get() -> Result<&'static IdleCgroup, &'static str> {
    static GROUP: OnceLock<Result<IdleCgroup, String>> = OnceLock::new();
    GROUP
        .get_or_init(IdleCgroup::create)
        .as_ref()
        .map_err(String::as_str)
}

/// A cgroup (v1 `cpu` controller) with `cpu.idle = 1`.
#[derive(Debug)]
pub(crate) struct IdleCgroup {
    dir: PathBuf,
}

impl IdleCgroup {
    /// The cgroup's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Move the calling thread into the cgroup.
    pub(crate) fn add_current_thread(&self) -> std::io::Result<()> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let mut tasks = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("tasks"))?;
        // One write per id: the kernel parses each write as one id.
        tasks.write_all(format!("{tid}\n").as_bytes())
    }

    fn create() -> Result<Self, String> {
        if !cfg!(target_os = "linux") {
            return Err("idle cgroups are Linux only".into());
        }
        let parent = own_cpu_cgroup_v1()?;
        sweep_stale(&parent);
        let dir = parent.join(format!("bulkhead-{}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        std::fs::write(dir.join("cpu.idle"), "1").map_err(|e| {
            let _ = std::fs::remove_dir(&dir);
            format!(
                "cannot set {}/cpu.idle (needs Linux >= 5.15): {e}",
                dir.display()
            )
        })?;
        Ok(Self { dir })
    }
}

/// The directory of this process's cgroup in the v1 `cpu` hierarchy.
fn own_cpu_cgroup_v1() -> Result<PathBuf, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let cgroups = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    let own = cpu_cgroup_path(&cgroups).ok_or(
        "no cgroup v1 `cpu` controller (cgroup v2 is not supported yet; see \
         docs/configuration.md, runtime.idle_cgroup)",
    )?;
    let (root, mount) =
        cpu_mount(&mountinfo).ok_or("the cgroup v1 `cpu` hierarchy is not mounted")?;
    let rel = Path::new(own)
        .strip_prefix(root)
        .map_err(|_| format!("cgroup {own} is outside the `cpu` mount's root {root}"))?;
    Ok(Path::new(mount).join(rel))
}

/// From `/proc/self/cgroup`: the path in the v1 hierarchy that has the `cpu` controller.
fn cpu_cgroup_path(cgroups: &str) -> Option<&str> {
    cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "cpu").then_some(path)
    })
}

/// From `/proc/self/mountinfo`: (root, mount point) of the v1 `cpu` hierarchy.
fn cpu_mount(mountinfo: &str) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        if fstype != "cgroup" || !options.split(',').any(|o| o == "cpu") {
            return None;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        Some((*fields.get(3)?, *fields.get(4)?))
    })
}

/// Remove the idle cgroups of processes that are gone (an empty cgroup is removed with
/// `rmdir`; one that still has threads refuses, and stays).
fn sweep_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("bulkhead-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cpu_hierarchy_in_proc_files() {
        let cgroups = "12:pids:/\n4:memory:/a/b\n3:cpu,cpuacct:/user.slice/x\n0::/\n";
        assert_eq!(cpu_cgroup_path(cgroups), Some("/user.slice/x"));
        assert_eq!(cpu_cgroup_path("0::/system.slice/db.service\n"), None);
        assert_eq!(cpu_cgroup_path("2:cpuset:/\n"), None, "cpuset is not cpu");

        let mountinfo = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
30 25 0:26 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
31 25 0:27 /user.slice /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
";
        assert_eq!(
            cpu_mount(mountinfo),
            Some(("/user.slice", "/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            cpu_mount("40 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
            None
        );
    }
}
