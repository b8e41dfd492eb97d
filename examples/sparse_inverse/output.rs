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
    /// same name, and removes the staging folder.
    pub fn commit(mut self) -> Result<(), Error> {
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
