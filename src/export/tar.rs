//! `type=tar`: the final filesystem as one tar stream, to a file or stdout.

use super::local::write_flattened;
use super::{BuildResult, Dest, OutputSpec};
use anyhow::{Context as _, Result};
use std::io::{BufWriter, Write};
use store::Store;
use store::WritebackFile;

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<()> {
    match spec.dest.as_ref().expect("validated: a dest") {
        Dest::Stdout => {
            let out = BufWriter::with_capacity(1 << 20, std::io::stdout());
            write_flattened(store, result, out)?.flush().context("writing to stdout")?;
        }
        Dest::Path(file) => {
            let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let temp = tempfile::Builder::new()
                .prefix(".builder-tar-")
                .permissions(crate::archive::user_file_mode())
                .tempfile_in(dir)
                .with_context(|| format!("creating a temp file in {}", dir.display()))?;
            let (file_handle, temp_path) = temp.into_parts();
            // Written back as it grows, so that the fsync before the rename is short.
            let out = BufWriter::with_capacity(1 << 20, WritebackFile::new(file_handle));
            let out = write_flattened(store, result, out)?;
            let mut file_handle = out.into_inner().map_err(|e| e.into_error()).context("writing the tar")?;
            file_handle.sync_all().context("syncing the tar")?;
            temp_path.persist(file).with_context(|| format!("renaming into {}", file.display()))?;
        }
    }
    Ok(())
}
