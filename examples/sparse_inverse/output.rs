//! The output folder of a run, filled all at once.
//!
//! Files are written into a staging folder inside the output folder and moved
//! into place only when the run succeeds. A failed or interrupted run leaves
//! the results of an earlier run in the folder untouched, instead of mixing
//! its own files with them.

use std::path::{Path, PathBuf};

use optlayer::Error;

/// A staging folder for the files of one run.
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates the output folder if needed and a fresh staging folder in it.
    pub fn new(out: &Path) -> Result<Self, Error> {
        let io_error = |action: &str, path: &Path| {
            let action = action.to_string();
            let path = path.to_path_buf();
            move |source| Error::Io { action, path, source }
        };
        std::fs::create_dir_all(out).map_err(io_error("failed to create the output folder", out))?;
        remove_abandoned(out);
        let dir = out.join(format!(".partial-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(io_error("failed to remove the stale staging folder", &dir))?;
        }
        std::fs::create_dir(&dir).map_err(io_error("failed to create the staging folder", &dir))?;
        Ok(Self {
            out: out.to_path_buf(),
            dir,
            committed: false,
        })
    }

    /// Returns the staging path of the output file `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Moves every staged file into the output folder, replacing files of the
    /// same name, removes the files named in `outputs` that this run did not
    /// write (results of an earlier run that would otherwise look current),
    /// and removes the staging folder.
    pub fn commit(mut self, outputs: &[&str]) -> Result<(), Error> {
        for name in outputs {
            let stale = self.out.join(name);
            if !self.dir.join(name).exists() && stale.is_file() {
                std::fs::remove_file(&stale).map_err(|source| Error::Io {
                    action: "failed to remove the earlier result".into(),
                    path: stale.clone(),
                    source,
                })?;
            }
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|source| Error::Io {
            action: "failed to list the staging folder".into(),
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                action: "failed to list the staging folder".into(),
                path: self.dir.clone(),
                source,
            })?;
            let target = self.out.join(entry.file_name());
            std::fs::rename(entry.path(), &target).map_err(|source| Error::Io {
                action: "failed to move a result into".into(),
                path: target.clone(),
                source,
            })?;
        }
        self.committed = true;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes the staging folders of runs that were killed: `.partial-<pid>`
/// folders whose process no longer exists. Only Linux, where `/proc` lists the
/// running processes, is checked; elsewhere they are left for the user.
fn remove_abandoned(out: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(".partial-")) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
            && let Err(error) = std::fs::remove_dir_all(entry.path())
        {
            log::warn!(
                "failed to remove the abandoned staging folder {}: {error}",
                entry.path().display()
            );
        }
    }
}
