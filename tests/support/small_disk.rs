//! A small tmpfs for tests of a full disk, shared by the test binaries of several
//! crates (`#[path]`-included: there is no crate for test support).
//!
//! Mounting needs root, as CI runs, or passwordless sudo; a failed mount fails the test
//! rather than skipping it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a path, unmounted when dropped.
pub struct SmallDisk(pub PathBuf);

fn privileged(program: &str) -> Command {
    // SAFETY-free check of the effective user: root runs mount itself.
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

impl SmallDisk {
    pub fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let status = privileged("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=1777"), "tmpfs"])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot mount a tmpfs at {}: the disk-full tests need root", path.display());
        SmallDisk(path.to_owned())
    }

    /// Fills the disk with a file, leaving about `spare` bytes; returns the file.
    pub fn fill(&self, spare: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0x55u8; 4096];
        let mut written = 0u64;
        while file.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        let _ = file.sync_all();
        file.set_len(written.saturating_sub(spare)).expect("leave room");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged("umount").arg("-l").arg(&self.0).status();
    }
}
