//! Atomic file replacement: write a temporary file next to the target, then rename it.
//!
//! On Unix, a process that opens the target path gets either the old file or the complete
//! new one, never a partly written file, because POSIX `rename` replaces the directory entry
//! in a single step. On Windows, `std::fs::rename` also replaces the target (through
//! `MoveFileExW` or `SetFileInformationByHandle`), but Windows does not document that
//! replacement as atomic.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use optlayer_core::{Error, Result};

/// Counter that keeps temporary names unique between threads of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically.
///
/// See [`write_atomic_with`] for the procedure and its errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |writer| writer.write_all(bytes))
}

/// Streams the output of `write` into a temporary file and renames it onto `path`.
///
/// The temporary file is `.{file name}.tmp-{process id}-{counter}` in the directory of
/// `path`. It is flushed and synced to disk before the rename, so after a crash `path`
/// contains either the old or the complete new contents. The new file gets the default
/// permissions of a newly created file, not those of the file it replaces. If `path` is a
/// symbolic link, the link itself is replaced.
///
/// The parent directory must exist: this function does not create it.
///
/// # Errors
///
/// Returns [`Error::Io`] naming `path` when `path` has no file name, when the temporary
/// file cannot be created (for example because the directory is missing), or when
/// `write`, the sync or the rename fails. In every error case the temporary file is
/// removed and `path` is left as it was.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let temp_path = temp_path_for(path)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(|source| {
            io_error(
                "failed to create a temporary file in the directory of",
                path,
                source,
            )
        })?;

    if let Err(source) = write_and_sync(file, write) {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error("failed to write", path, source));
    }

    if let Err(source) = fs::rename(&temp_path, path) {
        let _ = fs::remove_file(&temp_path);
        return Err(io_error("failed to replace", path, source));
    }

    sync_parent_dir(path);
    Ok(())
}

/// Builds the temporary path next to `path`.
fn temp_path_for(path: &Path) -> Result<PathBuf> {
    let Some(file_name) = path.file_name() else {
        let source = io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no file name; pass a path that ends in a file name",
        );
        return Err(io_error("failed to write", path, source));
    };

    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp_name = OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp-{}-{counter}", std::process::id()));
    Ok(path.with_file_name(temp_name))
}

/// Runs `write` on a buffered writer over `file`, then flushes and syncs the file.
fn write_and_sync<F>(file: File, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let mut writer = BufWriter::new(file);
    write(&mut writer)?;
    let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

/// Syncs the directory of `path` so that the rename itself survives a crash.
///
/// This is best effort: the rename has already succeeded and the new contents are in
/// place, so a failure here only weakens durability and is ignored.
#[cfg(unix)]
fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// Does nothing, because directories cannot be opened for syncing on this platform.
#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) {}

fn io_error(action: &str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action: action.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Creates an empty directory under the system temporary directory for one test.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("optlayer-atomic-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Lists the file names in `dir`, sorted.
    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_creates_file() {
        let dir = test_dir("creates");
        let path = dir.join("out.bin");
        write_atomic(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(file_names(&dir), vec!["out.bin".to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_replaces_old_content() {
        let dir = test_dir("replaces");
        let path = dir.join("out.bin");
        fs::write(&path, b"old content that is longer").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(file_names(&dir), vec!["out.bin".to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_write_keeps_old_content() {
        let dir = test_dir("failed-write");
        let path = dir.join("out.bin");
        fs::write(&path, b"old").unwrap();

        let result = write_atomic_with(&path, |writer| {
            writer.write_all(b"partial new content")?;
            writer.flush()?;
            Err(io::Error::other("simulated failure in the middle of writing"))
        });

        let err = result.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "unexpected error: {err:?}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("simulated failure"), "{message}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            file_names(&dir),
            vec!["out.bin".to_owned()],
            "the temporary file was not removed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_directory_returns_io_error() {
        let dir = test_dir("missing-dir");
        let path = dir.join("no-such-dir").join("out.bin");
        let err = write_atomic(&path, b"data").unwrap_err();
        let Error::Io {
            path: error_path,
            source,
            ..
        } = &err
        else {
            panic!("expected Error::Io, got {err:?}");
        };
        assert_eq!(error_path, &path);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert!(!dir.join("no-such-dir").exists());
        assert!(file_names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_without_file_name_is_rejected() {
        let err = write_atomic(Path::new("/"), b"data").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "unexpected error: {err:?}");
        assert!(err.to_string().contains("no file name"), "{err}");
    }

    #[test]
    fn concurrent_writers_leave_one_complete_file() {
        let dir = test_dir("concurrent");
        let path = dir.join("out.bin");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|k| vec![k; 64 * 1024]).collect();

        std::thread::scope(|scope| {
            for bytes in &contents {
                let path = &path;
                scope.spawn(move || write_atomic(path, bytes).unwrap());
            }
        });

        let written = fs::read(&path).unwrap();
        assert!(contents.contains(&written), "the file is a mix of several writes");
        assert_eq!(file_names(&dir), vec!["out.bin".to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_see_old_or_new_content() {
        let dir = test_dir("readers");
        let path = dir.join("out.bin");
        let old = vec![1u8; 256 * 1024];
        let new = vec![2u8; 256 * 1024];
        write_atomic(&path, &old).unwrap();

        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for round in 0..20 {
                    let bytes = if round % 2 == 0 { &new } else { &old };
                    write_atomic(&path, bytes).unwrap();
                }
            });
            while !writer.is_finished() {
                let seen = fs::read(&path).unwrap();
                assert!(seen == old || seen == new, "a reader saw a partly written file");
            }
        });

        assert_eq!(file_names(&dir), vec!["out.bin".to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
