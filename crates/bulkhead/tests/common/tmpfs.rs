//! A size-limited tmpfs for tests that need a disk that fills up: mounted on a fresh
//! temporary directory, filled and freed on demand, and unmounted when dropped (also
//! when the test panics).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs of a fixed size.
pub struct Tmpfs {
    /// Holds the mount point; removed after the unmount.
    parent: tempfile::TempDir,
    mount: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `48m`) on `<new temp dir>/<name>`. `Err` says why
    /// it could not be mounted (not root, no `CAP_SYS_ADMIN`, no `mount` command).
    pub fn mount(size: &str, name: &str) -> Result<Self, String> {
        let parent = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mount = parent.path().join(name);
        std::fs::create_dir(&mount).map_err(|e| format!("mkdir {}: {e}", mount.display()))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "bulkhead-test",
            ])
            .arg(&mount)
            .output()
            .map_err(|e| format!("running `mount`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs -o size={size}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let filler = parent.path().join(name).join("filler");
        Ok(Self {
            parent,
            mount,
            filler,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// The directory holding the mount point (on the ordinary disk: logs go there).
    pub fn parent(&self) -> &Path {
        self.parent.path()
    }

    /// Take every free byte with a filler file (appending to it if it exists); returns
    /// the bytes added. Afterwards any allocation on the tmpfs fails with `ENOSPC`.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("open filler");
        let mut added = 0u64;
        for chunk in [1 << 20, 64 << 10, 4 << 10, 1] {
            let buf = vec![0xa5u8; chunk];
            loop {
                match f.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => added += n as u64,
                    Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                    Err(e) => panic!("filling {}: {e}", self.filler.display()),
                }
            }
        }
        added
    }

    /// Delete the filler file: the space is free again.
    pub fn free(&self) {
        match std::fs::remove_file(&self.filler) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", self.filler.display()),
        }
    }
}

/// `ENOSPC` on Linux.
fn libc_enospc() -> i32 {
    28
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file (a server that outlived its test): detach
            // the mount so it goes away with its last user.
            let lazy = Command::new("umount").arg("-l").arg(&self.mount).status();
            eprintln!(
                "umount {} failed; lazy unmount: {lazy:?}",
                self.mount.display()
            );
        }
    }
}
