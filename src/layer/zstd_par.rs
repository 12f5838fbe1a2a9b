//! zstd on every core, as a stream of frames.
//!
//! The input is cut into jobs of [`JOB`] bytes; workers compress each job on its own
//! into one zstd frame, and a writer thread writes the frames in input order. A zstd
//! stream may hold any number of frames (RFC 8878, section 3.1) and every decoder
//! reads them back as one stream: `pzstd` and `zstd:chunked` layers are written this
//! way. Cut at fixed input offsets, the bytes depend on the input alone, never on the
//! number of cores or on how the caller split its writes.
//!
//! Against libzstd's own workers (which copy the input into job buffers and allocate
//! output buffers as they go) the job buffers are filled directly (by a reader,
//! [`ParZstd::read_from`], or by the workers themselves from a file,
//! [`ParZstd::compress_file`]) and every buffer is reused, so a layer's bytes are
//! copied once on their way in and once on their way out, and memory stays at a few
//! jobs per worker whatever the layer's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use zstd::zstd_safe::{self, CCtx, CParameter};

/// Bytes of input per frame. Big enough that the frames cost nothing measurable in
/// ratio (each starts without history: a window's worth of input in 4 MiB), small
/// enough that a few per worker stay in a cache-friendly, bounded memory.
pub const JOB: usize = 4 << 20;

/// More workers than this would outrun the writer (which hashes what they make on one
/// core) and only cost memory: [`JOB`] bytes times about three per worker.
const MAX_WORKERS: usize = 8;

/// A job: its place in the input, its buffer (always [`JOB`] bytes long) and its input.
type Job = (u64, Vec<u8>, Input);

/// Where a job's input is.
enum Input {
    /// In the buffer, this many bytes.
    Filled(usize),
    /// In a file, for the worker to read into the buffer itself (in parallel, and
    /// into its own cache).
    Read { file: Arc<File>, offset: u64, len: usize },
}

/// A compressed job on its way to the writer: its place in the input, its frame, and
/// its input buffer to hand back.
type Done = (u64, io::Result<Vec<u8>>, Vec<u8>);

/// Frames reach the writer in slices of this size: each is hashed and written (maybe
/// twice) while it is still in the cache.
const WRITE_SLICE: usize = 256 << 10;

/// The parallel zstd compressor in front of `W`.
pub struct ParZstd<W: Write + Send + 'static> {
    /// The job being filled ([`JOB`] bytes long; its first `filled` are input).
    job: Vec<u8>,
    filled: usize,
    /// Jobs handed out so far (the sequence number of the next one).
    sent: u64,
    /// Input buffers made so far (at most [`ParZstd::buffers`]).
    made: usize,
    buffers: usize,
    jobs: Option<SyncSender<Job>>,
    /// Input buffers the writer has finished with.
    free: Receiver<Vec<u8>>,
    workers: Vec<JoinHandle<()>>,
    /// Returns `W` and how many frames it wrote.
    writer: Option<JoinHandle<io::Result<(W, u64)>>>,
}

impl<W: Write + Send + 'static> ParZstd<W> {
    /// Compresses at `level` on `workers` threads (at least one) into `out`.
    pub fn new(out: W, level: i32, workers: usize) -> io::Result<Self> {
        let workers = workers.clamp(1, MAX_WORKERS);
        // Each worker busy with one job and one more queued for it, plus the one
        // being filled; the writer hands buffers back as it writes their frames.
        let buffers = 2 * workers + 1;
        let (jobs, queued) = mpsc::sync_channel::<Job>(workers);
        let queued = Arc::new(Mutex::new(queued));
        let (done, finished) = mpsc::channel::<Done>();
        let (give_back, free) = mpsc::sync_channel::<Vec<u8>>(buffers);
        // Frame buffers, reused: at most one per job in flight.
        let frames = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));

        let writer = {
            let frames = frames.clone();
            std::thread::Builder::new()
                .name("zstd-writer".into())
                .spawn(move || write_in_order(out, finished, give_back, frames))?
        };
        let mut spawned = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (queued, done, frames) = (queued.clone(), done.clone(), frames.clone());
            let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: cannot create a context"))?;
            cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(zstd_error)?;
            let thread = std::thread::Builder::new()
                .name("zstd".into())
                .spawn(move || compress_jobs(cctx, queued, done, frames));
            spawned.push(thread?);
        }
        Ok(ParZstd {
            job: vec![0; JOB],
            filled: 0,
            sent: 0,
            made: 1,
            buffers,
            jobs: Some(jobs),
            free,
            workers: spawned,
            writer: Some(writer),
        })
    }

    /// Compresses everything `reader` gives, read straight into the job buffers;
    /// returns how many bytes it read.
    pub fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<u64> {
        let mut total = 0;
        loop {
            if self.filled == JOB {
                self.send_job()?;
            }
            let n = match reader.read(&mut self.job[self.filled..]) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.filled += n;
            total += n as u64;
        }
    }

    /// Reads at most `max` bytes of `reader` (one read) straight into the job being
    /// filled; returns them (empty: the reader ended). A job filled so is handed out
    /// when more input comes, or at the end: the bytes returned are still there to be
    /// looked at (a packed layer's check hashes them).
    pub fn fill_from(&mut self, reader: &mut dyn Read, max: usize) -> io::Result<&[u8]> {
        if self.filled == JOB {
            self.send_job()?;
        }
        let start = self.filled;
        let end = start + max.min(JOB - start);
        let n = super::tar_sink::read_some(reader, &mut self.job[start..end])?;
        self.filled += n;
        Ok(&self.job[start..start + n])
    }

    /// Compresses the whole of `file` (from its start, whatever its offset), each
    /// job's worker reading its part itself; returns how many bytes it read.
    pub fn compress_file(&mut self, file: File) -> io::Result<u64> {
        let len = file.metadata()?.len();
        // The first part completes the job being filled, the last starts the next one:
        // the frames are cut at the same places as if the file had been written.
        let head = ((JOB - self.filled) as u64).min(len) as usize;
        file.read_exact_at(&mut self.job[self.filled..self.filled + head], 0)?;
        self.filled += head;
        if self.filled < JOB {
            return Ok(len);
        }
        self.send_job()?;
        let file = Arc::new(file);
        let mut offset = head as u64;
        while len - offset >= JOB as u64 {
            let buffer = self.take_buffer()?;
            self.send((self.sent, buffer, Input::Read { file: file.clone(), offset, len: JOB }))?;
            offset += JOB as u64;
        }
        let tail = (len - offset) as usize;
        file.read_exact_at(&mut self.job[..tail], offset)?;
        self.filled = tail;
        Ok(len)
    }

    /// Hands the filled job to the workers and takes a buffer for the next.
    fn send_job(&mut self) -> io::Result<()> {
        let next = self.take_buffer()?;
        let buffer = std::mem::replace(&mut self.job, next);
        self.send((self.sent, buffer, Input::Filled(self.filled)))?;
        self.filled = 0;
        Ok(())
    }

    /// A buffer for a job: a new one while there are fewer than [`ParZstd::buffers`],
    /// else one the writer is done with.
    fn take_buffer(&mut self) -> io::Result<Vec<u8>> {
        if self.made < self.buffers {
            self.made += 1;
            return Ok(vec![0; JOB]);
        }
        match self.free.recv() {
            Ok(buffer) => Ok(buffer),
            Err(_) => Err(self.stopped()),
        }
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        match self.jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => {
                self.sent += 1;
                Ok(())
            }
            _ => Err(self.stopped()),
        }
    }

    /// Why the writer stopped early (and with it the workers).
    fn stopped(&mut self) -> io::Error {
        match self.stop() {
            Err(e) => e,
            Ok(_) => io::Error::other("zstd writer stopped"),
        }
    }

    /// Ends the input and waits for every frame to be written; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty input still makes one (empty) frame: a valid zstd stream.
        if self.filled > 0 || self.sent == 0 {
            self.send_job()?;
        }
        self.stop()
    }

    fn stop(&mut self) -> io::Result<W> {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let writer = self.writer.take().ok_or_else(|| io::Error::other("zstd writer already stopped"))?;
        let (out, written) = writer.join().unwrap_or_else(|_| Err(io::Error::other("zstd writer panicked")))?;
        // A worker that died (a panic) leaves its frame and those after it unwritten.
        if written != self.sent {
            return Err(io::Error::other(format!("zstd: {written} of {} frames written", self.sent)));
        }
        Ok(out)
    }
}

impl<W: Write + Send + 'static> Write for ParZstd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.filled == JOB {
            self.send_job()?;
        }
        let n = buf.len().min(JOB - self.filled);
        self.job[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == JOB {
            self.send_job()?;
        }
        Ok(n)
    }

    /// Flushes nothing: a frame ends only every [`JOB`] bytes of input.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParZstd<W> {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): let the threads end, and `W` be dropped (a
        // temp blob removing itself), before the error goes on.
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

/// A worker: compresses jobs into frames until there are no more.
fn compress_jobs(
    mut cctx: CCtx<'static>,
    queued: Arc<Mutex<Receiver<Job>>>,
    done: mpsc::Sender<Done>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut own: Option<Vec<u8>> = None;
    loop {
        let job = queued.lock().map_err(|_| ()).and_then(|q| q.recv().map_err(|_| ()));
        let Ok((seq, buffer, input)) = job else { return };
        let (read, data) = match input {
            Input::Filled(len) => (Ok(()), &buffer[..len]),
            // Into this worker's own buffer, which it has just compressed from and so
            // is still in the cache (the job's buffer stands for it in the count).
            Input::Read { file, offset, len } => {
                let local = own.get_or_insert_with(|| vec![0; JOB]);
                (file.read_exact_at(&mut local[..len], offset), &local[..len])
            }
        };
        let mut frame = frames.lock().ok().and_then(|mut f| f.pop()).unwrap_or_default();
        frame.clear();
        frame.reserve(zstd_safe::compress_bound(data.len()));
        let frame = read.and_then(|()| cctx.compress2(&mut frame, data).map(|_| frame).map_err(zstd_error));
        if done.send((seq, frame, buffer)).is_err() {
            return;
        }
    }
}

/// The writer: writes frames in input order, handing each job's buffers back once
/// its frame is written (so no more than the jobs in flight ever wait here).
fn write_in_order<W: Write>(
    mut out: W,
    finished: Receiver<Done>,
    give_back: SyncSender<Vec<u8>>,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
) -> io::Result<(W, u64)> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (seq, frame, input) in finished {
        waiting.insert(seq, (frame, input));
        while let Some((frame, input)) = waiting.remove(&next) {
            let frame = frame?;
            for slice in frame.chunks(WRITE_SLICE) {
                out.write_all(slice)?;
            }
            // Capacity for every buffer: never blocks. The compressor may be gone.
            let _ = give_back.send(input);
            if let Ok(mut spare) = frames.lock() {
                spare.push(frame);
            }
            next += 1;
        }
    }
    out.flush()?;
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes, half of them incompressible (xorshift), half text.
    fn data(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len / 8 + 1)
            .flat_map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut bytes = state.to_le_bytes();
                bytes[4..].copy_from_slice(&((i % 1000) as u32).to_le_bytes());
                bytes
            })
            .take(len)
            .collect()
    }

    fn written(input: &[u8], workers: usize) -> Vec<u8> {
        let mut z = ParZstd::new(Vec::new(), 3, workers).unwrap();
        z.write_all(input).unwrap();
        z.finish().unwrap()
    }

    fn frames(mut stream: &[u8]) -> usize {
        let mut n = 0;
        while !stream.is_empty() {
            let size = zstd_safe::find_frame_compressed_size(stream).unwrap();
            stream = &stream[size..];
            n += 1;
        }
        n
    }

    #[test]
    fn one_frame_per_job_read_back_as_one_stream() {
        let input = data(2 * JOB + 12345);
        let out = written(&input, 2);
        assert_eq!(frames(&out), 3);
        let mut back = Vec::new();
        zstd::Decoder::new(&out[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == input);
        // Nothing in, one empty frame out: still a zstd stream.
        let empty = written(&[], 1);
        assert_eq!(frames(&empty), 1);
        assert_eq!(zstd::decode_all(&empty[..]).unwrap(), b"");
    }

    /// Frames are cut at the same input offsets however the input arrives: written in
    /// pieces, read from a reader, or read by the workers from a file (with some of it
    /// written before), on any number of workers.
    #[test]
    fn the_bytes_depend_on_the_input_alone() {
        let input = data(3 * JOB + 777);
        let reference = written(&input, 2);
        assert_eq!(written(&input, 1), reference);
        assert_eq!(written(&input, 5), reference);

        let mut z = ParZstd::new(Vec::new(), 3, 3).unwrap();
        for piece in input.chunks(100_003) {
            z.write_all(piece).unwrap();
        }
        assert_eq!(z.finish().unwrap(), reference);

        let mut z = ParZstd::new(Vec::new(), 3, 2).unwrap();
        assert_eq!(z.read_from(&mut &input[..]).unwrap(), input.len() as u64);
        assert_eq!(z.finish().unwrap(), reference);

        // Read straight into the jobs (a job filled to its end is sent when more
        // comes), mixed with writes.
        let mut z = ParZstd::new(Vec::new(), 3, 2).unwrap();
        let (mut rest, mut turn) = (&input[..], 0);
        while !rest.is_empty() {
            turn += 1;
            if turn % 3 == 0 {
                let n = rest.len().min(50_000);
                z.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
            } else {
                let before = rest;
                let got = z.fill_from(&mut rest, 1 << 20).unwrap().to_vec();
                assert_eq!(got, before[..got.len()]);
            }
        }
        assert!(z.fill_from(&mut rest, 1000).unwrap().is_empty());
        assert!(z.finish().unwrap() == reference);

        let dir = tempfile::tempdir().unwrap();
        for split in [0, 1000, JOB, JOB + 1] {
            let path = dir.path().join("input");
            std::fs::write(&path, &input[split..]).unwrap();
            let mut z = ParZstd::new(Vec::new(), 3, 2).unwrap();
            z.write_all(&input[..split]).unwrap();
            let read = z.compress_file(File::open(&path).unwrap()).unwrap();
            assert_eq!(read, (input.len() - split) as u64);
            assert!(z.finish().unwrap() == reference, "split at {split}");
        }
        // A file shorter than a job, and more written after it.
        let path = dir.path().join("small");
        std::fs::write(&path, &input[..5000]).unwrap();
        let mut z = ParZstd::new(Vec::new(), 3, 2).unwrap();
        z.compress_file(File::open(&path).unwrap()).unwrap();
        z.write_all(&input[5000..]).unwrap();
        assert!(z.finish().unwrap() == reference);
    }

    /// A writer that fails once it has taken `limit` bytes.
    struct FailAfter(usize);

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.0 {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The writer failing stops the workers and the compressor; the error is the
    /// writer's, however many jobs were queued; nothing hangs.
    #[test]
    fn a_failing_writer_stops_everything() {
        let input = data(12 * JOB);
        let mut z = ParZstd::new(FailAfter(1000), 3, 2).unwrap();
        let err = match z.write_all(&input) {
            Err(e) => e,
            Ok(()) => z.finish().err().expect("an error"),
        };
        assert!(err.to_string().contains("disk full"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, &input).unwrap();
        let mut z = ParZstd::new(FailAfter(JOB), 3, 2).unwrap();
        let err = match z.compress_file(File::open(&path).unwrap()) {
            Err(e) => e,
            Ok(_) => z.finish().err().expect("an error"),
        };
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
