//! An append-only, checksummed, fsynced record log: the storage of the durable write-behind
//! queue (issue 14; the queue itself is not built yet).
//!
//! Each record is `[len: u32 LE][crc32: u32 LE][seq: u64 LE][payload: len bytes]`, the CRC
//! (crc32fast, the IEEE polynomial) covering the sequence number and the payload. An append
//! returns only after the record is written and `fsync`ed (`File::sync_data`), so an
//! acknowledged record survives a crash or a power cut.
//!
//! Opening the log reads it from the start. A record cut short by a crash (a torn tail), or one
//! whose checksum fails, ends the readable log: the bytes from there on are moved aside to
//! `<file>.corrupt-<offset>` (kept for inspection, never replayed as garbage), reported in
//! [`Recovery`], and the log is truncated to its last good record so appends continue after it.
//!
//! Records are read back in order with [`RecordLog::records`]; [`RecordLog::truncate_before`]
//! drops the records a consumer has finished with (it rewrites the file through a temporary
//! and a rename, fsynced).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 4 + 4 + 8;

/// The largest payload one record may carry (16 MiB), so a corrupt length cannot make
/// recovery allocate without bound.
pub const MAX_RECORD: usize = 16 << 20;

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number: 1 for the first record ever appended, then one more each time.
    pub seq: u64,
    /// What was appended.
    pub payload: Vec<u8>,
}

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Good records in the log.
    pub records: usize,
    /// Where a torn or corrupt tail began, how many bytes it had, and where they were moved.
    pub damaged: Option<(u64, u64, PathBuf)>,
}

/// An append-only log of checksummed records in one file.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    records: usize,
    bytes: u64,
}

impl RecordLog {
    /// Opens (or creates) the log at `path`, recovering it as described in the
    /// [module documentation](self).
    pub fn open(path: impl Into<PathBuf>) -> io::Result<(RecordLog, Recovery)> {
        let path = path.into();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (records, good, last_seq) = scan(&data);
        let mut recovery = Recovery {
            records: records.len(),
            damaged: None,
        };
        if good < data.len() {
            let aside = path.with_extension(format!("corrupt-{good}"));
            let mut kept = File::create(&aside)?;
            kept.write_all(&data[good..])?;
            kept.sync_all()?;
            file.set_len(good as u64)?;
            file.sync_all()?;
            recovery.damaged = Some((good as u64, (data.len() - good) as u64, aside));
        }
        file.seek(SeekFrom::End(0))?;
        let first_seq = first_seq_hint(&path)?;
        Ok((
            RecordLog {
                next_seq: last_seq.map_or(first_seq, |seq| seq + 1),
                records: records.len(),
                bytes: good as u64,
                path,
                file,
            },
            recovery,
        ))
    }

    /// Appends `payload` and returns its sequence number once it is on disk.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of {} bytes is over the {MAX_RECORD}-byte limit",
                    payload.len()
                ),
            ));
        }
        let seq = self.next_seq;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        encode(seq, payload, &mut record);
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.next_seq += 1;
        self.records += 1;
        self.bytes += record.len() as u64;
        Ok(seq)
    }

    /// Every record in the log, oldest first.
    pub fn records(&self) -> io::Result<Vec<Record>> {
        let data = std::fs::read(&self.path)?;
        Ok(scan(&data).0)
    }

    /// Drops the records before `seq` (those a consumer has finished with), keeping the rest
    /// and the sequence numbering.
    pub fn truncate_before(&mut self, seq: u64) -> io::Result<()> {
        let data = std::fs::read(&self.path)?;
        let (records, good, _) = scan(&data);
        let kept: Vec<&Record> = records.iter().filter(|r| r.seq >= seq).collect();
        let mut out = Vec::with_capacity(good);
        for record in &kept {
            encode(record.seq, &record.payload, &mut out);
        }
        let temporary = self.path.with_extension("rewrite");
        {
            let mut file = File::create(&temporary)?;
            file.write_all(&out)?;
            file.sync_all()?;
        }
        // Where numbering resumes if every record is dropped.
        write_seq_hint(&self.path, self.next_seq)?;
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        self.file.seek(SeekFrom::End(0))?;
        self.records = kept.len();
        self.bytes = out.len() as u64;
        Ok(())
    }

    /// Records in the log.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The log's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Appends record `seq` with `payload` to `out`, in the on-disk layout.
fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The good records at the start of `data`, where they end, and the last one's sequence.
fn scan(data: &[u8]) -> (Vec<Record>, usize, Option<u64>) {
    let mut records = Vec::new();
    let mut at = 0;
    let mut last = None;
    while data.len() - at >= HEADER {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(data[at + 8..at + 16].try_into().expect("8 bytes"));
        if len > MAX_RECORD || data.len() - at - HEADER < len {
            break;
        }
        let payload = &data[at + HEADER..at + HEADER + len];
        if checksum(seq, payload) != crc || last.is_some_and(|last| seq != last + 1) {
            break;
        }
        records.push(Record {
            seq,
            payload: payload.to_vec(),
        });
        last = Some(seq);
        at += HEADER + len;
    }
    (records, at, last)
}

fn hint_path(path: &Path) -> PathBuf {
    path.with_extension("next-seq")
}

/// The sequence number to start from in an empty log (1, unless records were dropped).
fn first_seq_hint(path: &Path) -> io::Result<u64> {
    match std::fs::read(hint_path(path)) {
        Ok(bytes) if bytes.len() == 8 => Ok(u64::from_le_bytes(bytes.try_into().expect("8"))),
        Ok(_) => Ok(1),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(1),
        Err(error) => Err(error),
    }
}

fn write_seq_hint(path: &Path, seq: u64) -> io::Result<()> {
    let hint = hint_path(path);
    let temporary = hint.with_extension("next-seq.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&seq.to_le_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &hint)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} {}", "x".repeat((i % 7) as usize * 10)).into_bytes()
    }

    #[test]
    fn appended_records_come_back_in_order_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.log");
        let (mut log, recovery) = RecordLog::open(&path).unwrap();
        assert_eq!(recovery, Recovery::default());
        for i in 1..=20 {
            assert_eq!(log.append(&payload(i)).unwrap(), i);
        }
        drop(log);
        let (log, recovery) = RecordLog::open(&path).unwrap();
        assert_eq!((recovery.records, recovery.damaged), (20, None));
        let records = log.records().unwrap();
        assert_eq!(records.len(), 20);
        for (i, record) in (1..).zip(&records) {
            assert_eq!((record.seq, &record.payload), (i, &payload(i)));
        }
        assert_eq!(log.next_seq(), 21);
    }

    /// A crash can cut the file anywhere: every cut keeps exactly the whole records before it,
    /// moves the rest aside, and appends continue with the next sequence number.
    #[test]
    fn a_tail_torn_at_any_byte_keeps_exactly_the_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.log");
        let (mut log, _) = RecordLog::open(&full).unwrap();
        let mut ends = vec![0u64];
        for i in 1..=6 {
            log.append(&payload(i)).unwrap();
            ends.push(log.bytes());
        }
        let bytes = std::fs::read(&full).unwrap();
        for cut in 0..=bytes.len() {
            let path = dir.path().join(format!("cut-{cut}.log"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let (mut log, recovery) = RecordLog::open(&path).unwrap();
            let whole = ends.iter().filter(|&&end| end as usize <= cut).count() - 1;
            assert_eq!(recovery.records, whole, "cut at {cut}");
            let boundary = ends[whole] as usize;
            match &recovery.damaged {
                None => assert_eq!(cut, boundary, "cut at {cut}"),
                Some((at, len, aside)) => {
                    assert_eq!((*at as usize, *len as usize), (boundary, cut - boundary));
                    assert_eq!(std::fs::read(aside).unwrap(), &bytes[boundary..cut]);
                }
            }
            assert_eq!(log.append(b"after").unwrap(), whole as u64 + 1);
            let records = log.records().unwrap();
            assert_eq!(records.len(), whole + 1, "cut at {cut}");
            assert_eq!(records.last().unwrap().payload, b"after");
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_readable_log_and_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.log");
        let (mut log, _) = RecordLog::open(&path).unwrap();
        for i in 1..=4 {
            log.append(&payload(i)).unwrap();
        }
        let second_end = {
            let records = log.records().unwrap();
            (HEADER * 2 + records[0].payload.len() + records[1].payload.len()) as u64
        };
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[second_end as usize + HEADER] ^= 0x01; // the third record's payload
        std::fs::write(&path, &bytes).unwrap();
        let (log, recovery) = RecordLog::open(&path).unwrap();
        assert_eq!(recovery.records, 2);
        assert_eq!(recovery.damaged.as_ref().unwrap().0, second_end);
        assert_eq!(log.records().unwrap().len(), 2);
        assert_eq!(log.next_seq(), 3);
    }

    #[test]
    fn dropping_consumed_records_keeps_the_rest_and_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.log");
        let (mut log, _) = RecordLog::open(&path).unwrap();
        for i in 1..=5 {
            log.append(&payload(i)).unwrap();
        }
        log.truncate_before(4).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log.append(b"six").unwrap(), 6);
        log.truncate_before(7).unwrap();
        assert!(log.is_empty());
        drop(log);
        let (mut log, recovery) = RecordLog::open(&path).unwrap();
        assert_eq!(recovery.records, 0);
        assert_eq!(
            log.append(b"seven").unwrap(),
            7,
            "numbering survives an empty log"
        );
        let too_big = vec![0u8; MAX_RECORD + 1];
        assert_eq!(
            log.append(&too_big).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
