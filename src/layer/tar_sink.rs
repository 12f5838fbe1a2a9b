//! Where a tar goes ([`TarSink`]): a writer that may take a file's bytes straight
//! into a buffer of its own. A zstd export's compressor takes them into its 4 MiB job
//! buffers, where they are compressed: copied there through the tar writer's buffer,
//! 512 MB of them cost a few percent of the export's CPU.

use std::io::{self, Read, Write};

/// Where a tar goes: a writer that may take a file's bytes straight into a buffer of
/// its own (a compressor's job) rather than have them copied there from the tar
/// writer's.
pub trait TarSink: Write {
    /// Reads at most `scratch.len()` bytes of `file` and takes them as `write` would;
    /// returns them (empty: the file ended), in `scratch` or in a buffer of its own.
    fn write_from<'a>(&'a mut self, file: &mut dyn Read, scratch: &'a mut [u8]) -> io::Result<&'a [u8]> {
        copy_through(self, file, scratch)
    }
}

/// [`TarSink::write_from`] through `scratch`: read, then written.
pub fn copy_through<'a, W: Write + ?Sized>(
    out: &mut W,
    file: &mut dyn Read,
    scratch: &'a mut [u8],
) -> io::Result<&'a [u8]> {
    let n = read_some(file, scratch)?;
    out.write_all(&scratch[..n])?;
    Ok(&scratch[..n])
}

/// One `read`, retried when interrupted.
pub fn read_some(file: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            read => return read,
        }
    }
}

/// Any writer, as a sink that copies files through the tar writer's buffer.
pub struct Copying<W>(pub W);

impl<W: Write> Write for Copying<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> TarSink for Copying<W> {}
