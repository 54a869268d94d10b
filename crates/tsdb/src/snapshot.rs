//! The head snapshot: every unsealed head, compressed with the chunk codec, written to
//! `head.snapshot` by a checkpoint so that older WAL segments can be deleted. Written to a
//! temporary file, fsync'd and renamed, so a crash leaves either the old or the new one.
//! Records: `[len u32][crc32 u32][series varint][chunk]`.

use crate::codec::{Reader, decode_chunk, encode_chunk, put_varint};
use crate::head::Head;
use crate::sample::{Sample, SeriesId};
use crate::wal::sync_dir;
use crate::{Error, Result};
use std::io::Write;
use std::path::Path;

const FILE: &str = "head.snapshot";

pub(crate) fn write(dir: &Path, head: &Head) -> Result<()> {
    let temporary = dir.join(format!("{FILE}.tmp"));
    let io = |e: std::io::Error| Error::Io(format!("writing {}: {e}", temporary.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temporary).map_err(io)?);
    head.visit(&mut |id, samples| {
        let mut record = Vec::with_capacity(16 + samples.len());
        put_varint(&mut record, u64::from(id));
        record.extend(encode_chunk(samples)?);
        file.write_all(&(record.len() as u32).to_le_bytes())
            .and_then(|()| file.write_all(&crc32fast::hash(&record).to_le_bytes()))
            .and_then(|()| file.write_all(&record))
            .map_err(io)
    })?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, dir.join(FILE)).map_err(io)?;
    sync_dir(dir)
}

/// The snapshot's heads, or nothing if there is no snapshot yet.
pub(crate) fn load(dir: &Path) -> Result<Vec<(SeriesId, Vec<Sample>)>> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io(format!("reading {}: {e}", path.display()))),
    };
    let corrupt = |at: usize| Error::Corrupt(format!("{} is damaged at byte {at}", path.display()));
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 8).ok_or_else(|| corrupt(at))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let record =
            bytes.get(at + 8..at + 8 + len).filter(|r| crc32fast::hash(r) == crc).ok_or_else(|| corrupt(at))?;
        let mut reader = Reader::new(record);
        let id = SeriesId::try_from(reader.varint()?).map_err(|_| corrupt(at))?;
        out.push((id, decode_chunk(&record[record.len() - reader.remaining()..])?));
        at += 8 + len;
    }
    Ok(out)
}
