//! [`Disk`](super::Disk) over any module with `std::fs`'s shape.
//!
//! The simulator's disk is turmoil's `fs::shim::std::fs`, the production disk is `std::fs`; the
//! code is the same, so it is written once, as a macro over the module path.

/// Defines `pub struct $name` implementing [`Disk`](crate::Disk) with the file-system
/// module `$fs` (e.g. `std::fs`) and `$sync_dir`, a `fn(&Path) -> io::Result<()>` that makes a
/// directory's entries durable.
///
/// Existence checks go through `$fs::metadata`, never `Path::exists`, which would look at the
/// real disk under simulation.
#[macro_export]
macro_rules! fs_disk {
    ($(#[$attr:meta])* $name:ident, $($fs:ident)::+, $sync_dir:path) => {
        $(#[$attr])*
        pub struct $name {
            root: ::std::path::PathBuf,
            open: ::std::collections::BTreeMap<String, $($fs)::+::File>,
            /// Directories whose entries changed since the last sync.
            unsynced_dirs: ::std::collections::BTreeSet<::std::path::PathBuf>,
        }

        impl $name {
            pub fn new(root: impl Into<::std::path::PathBuf>) -> ::std::io::Result<Self> {
                let root = root.into();
                $($fs)::+::create_dir_all(&root)?;
                Ok($name {
                    root,
                    open: ::std::collections::BTreeMap::new(),
                    unsynced_dirs: ::std::collections::BTreeSet::new(),
                })
            }

            fn file(&mut self, path: &str) -> ::std::io::Result<&mut $($fs)::+::File> {
                if !self.open.contains_key(path) {
                    let full = self.root.join(path);
                    let parent = full.parent().unwrap_or(&self.root).to_path_buf();
                    if $($fs)::+::metadata(&parent).is_err() {
                        $($fs)::+::create_dir_all(&parent)?;
                        self.unsynced_dirs.insert(self.root.clone());
                    }
                    if $($fs)::+::metadata(&full).is_err() {
                        self.unsynced_dirs.insert(parent);
                    }
                    // Positioned at the end once, then written at the cursor: the writer is
                    // the only one, so this is append, without asking the file system for the
                    // file's length on every write (turmoil's costs a scan of every unsynced
                    // write of the host).
                    let mut f = $($fs)::+::OpenOptions::new()
                        .create(true)
                        .read(true)
                        .write(true)
                        .open(&full)?;
                    ::std::io::Seek::seek(&mut f, ::std::io::SeekFrom::End(0))?;
                    self.open.insert(path.to_string(), f);
                }
                Ok(self.open.get_mut(path).expect("opened above"))
            }

            /// Makes every open file and changed directory durable, as an operating system's
            /// background writeback eventually does without being asked.
            pub fn sync_everything(&mut self) -> ::std::io::Result<()> {
                for f in self.open.values() {
                    f.sync_all()?;
                }
                let dirs = ::std::mem::take(&mut self.unsynced_dirs);
                for d in dirs.iter().rev() {
                    $sync_dir(d)?;
                }
                Ok(())
            }
        }

        impl $crate::Disk for $name {
            /// Reads every `<dir>/<file>` under the root in sorted order. The order matters
            /// beyond the result: a simulated disk draws its read-fault dice per read, and
            /// turmoil's `read_dir` order comes from a `HashSet` that differs per process, so
            /// reading in that order would make one seed replay differently in another process.
            fn load(&mut self) -> ::std::io::Result<Vec<(String, ::bytes::Bytes)>> {
                let mut dirs = Vec::new();
                for dir in $($fs)::+::read_dir(&self.root)? {
                    let dir = dir?;
                    if dir.file_type()?.is_dir() {
                        dirs.push((dir.file_name().to_string_lossy().into_owned(), dir.path()));
                    }
                }
                dirs.sort();
                let mut out = Vec::new();
                for (dir_name, dir_path) in dirs {
                    let mut files = Vec::new();
                    for file in $($fs)::+::read_dir(&dir_path)? {
                        let file = file?;
                        if file.file_type()?.is_file() {
                            files.push((file.file_name().to_string_lossy().into_owned(), file.path()));
                        }
                    }
                    files.sort();
                    for (name, path) in files {
                        let bytes = $($fs)::+::read(&path)?;
                        out.push((format!("{dir_name}/{name}"), ::bytes::Bytes::from(bytes)));
                    }
                }
                Ok(out)
            }

            fn apply(&mut self, op: &$crate::StorageOp) -> ::std::io::Result<()> {
                use ::std::io::Write;
                use $crate::StorageOp;
                match op {
                    StorageOp::Append { path, bytes } => self.file(path)?.write_all(bytes),
                    StorageOp::Sync { path, .. } => {
                        // A sync completes after it was issued (see the driver), by which time
                        // the file may have been removed; reopening it would recreate it.
                        // A file still open here exists: removals go through `Remove`.
                        let exists = self.open.contains_key(path.as_str())
                            || $($fs)::+::metadata(self.root.join(path)).is_ok();
                        if exists {
                            self.file(path)?.sync_all()?;
                        }
                        // Children before the root, so a crash never keeps a directory entry
                        // whose own entries were not yet made durable.
                        let dirs = ::std::mem::take(&mut self.unsynced_dirs);
                        for d in dirs.iter().rev() {
                            $sync_dir(d)?;
                        }
                        Ok(())
                    }
                    StorageOp::Truncate { path, len } => {
                        let f = self.file(path)?;
                        f.set_len(*len)?;
                        // The next append goes to the new end, as in append mode.
                        ::std::io::Seek::seek(f, ::std::io::SeekFrom::Start(*len)).map(|_| ())
                    }
                    StorageOp::Remove { path } => {
                        self.open.remove(path.as_str());
                        let full = self.root.join(path);
                        match $($fs)::+::remove_file(&full) {
                            Err(e) if e.kind() != ::std::io::ErrorKind::NotFound => Err(e),
                            _ => {
                                if let Some(parent) = full.parent() {
                                    self.unsynced_dirs.insert(parent.to_path_buf());
                                }
                                Ok(())
                            }
                        }
                    }
                }
            }
        }
    };
}
