//! The Modbus data model and wire values, without I/O: tags (register table, data type,
//! byte and word order, scale and offset), read planning (contiguous addresses merged
//! into one request within the protocol's limits), decoding, and the quality of
//! samples whose read failed.

use model::sample::{Quality, SeriesKey, Severity};
use serde::{Deserialize, Serialize};
use tokio_modbus::ExceptionCode;

/// Which Modbus table a tag lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl Table {
    fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// The most items one request may read (Modbus application protocol, section 6).
    fn max_items(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }
}

/// How the registers of a tag are read as a number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    #[default]
    U16,
    I16,
    U32,
    I32,
    U64,
    F32,
    F64,
    /// One bit: a coil or discrete input, or bit `bit` of a register.
    Bool,
}

impl DataType {
    pub fn registers(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 | DataType::Bool => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::F64 => 4,
        }
    }
}

/// Byte order of multi-register values: `ABCD` is big-endian words in big-endian order
/// (the Modbus default); `CDAB` swaps words, `BADC` swaps bytes, `DCBA` both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    #[serde(rename = "CDAB")]
    Cdab,
    #[serde(rename = "BADC")]
    Badc,
    #[serde(rename = "DCBA")]
    Dcba,
}

/// One raw address mapped to a signal of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    pub asset: String,
    pub signal: String,
    pub table: Table,
    /// Zero-based protocol address.
    pub address: u16,
    #[serde(default)]
    pub data_type: DataType,
    #[serde(default)]
    pub order: Order,
    /// For `bool` tags on a register: which bit (0 = least significant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit: Option<u8>,
    /// Engineering value = raw * scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
}

fn one() -> f64 {
    1.0
}

impl Tag {
    /// Registers (or bits) the tag occupies.
    pub fn width(&self) -> u16 {
        if self.table.is_bits() { 1 } else { self.data_type.registers() }
    }

    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.asset.clone(), self.signal.clone())
    }
}

/// One request: `count` items of `table` from `start`, answering `tags` (indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    pub tags: Vec<usize>,
}

/// Merges tags into as few requests as the protocol allows: tags of one table whose
/// addresses are at most `max_gap` apart share a request, up to 125 registers or 2,000
/// bits.
pub fn plan(tags: &[Tag], max_gap: u16) -> Vec<Read> {
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by_key(|&i| (tags[i].table, tags[i].address));
    let mut reads: Vec<Read> = Vec::new();
    for i in order {
        let tag = &tags[i];
        let end = u32::from(tag.address) + u32::from(tag.width());
        if let Some(read) = reads.last_mut()
            && read.table == tag.table
            && u32::from(tag.address) <= u32::from(read.start) + u32::from(read.count) + u32::from(max_gap)
            && end - u32::from(read.start) <= u32::from(tag.table.max_items())
        {
            read.count = read.count.max((end - u32::from(read.start)) as u16);
            read.tags.push(i);
            continue;
        }
        reads.push(Read { table: tag.table, start: tag.address, count: tag.width(), tags: vec![i] });
    }
    reads
}

/// Decodes a register tag from its registers; `None` when there are fewer than its
/// data type needs.
pub fn decode_registers(tag: &Tag, words: &[u16]) -> Option<f64> {
    let words = words.get(..usize::from(tag.data_type.registers()))?;
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    match tag.order {
        Order::Abcd => {}
        Order::Cdab => {
            let swapped: Vec<u8> = bytes.chunks(2).rev().flatten().copied().collect();
            bytes = swapped;
        }
        Order::Badc => bytes.chunks_mut(2).for_each(|pair| pair.swap(0, 1)),
        Order::Dcba => bytes.reverse(),
    }
    let raw = match tag.data_type {
        DataType::U16 => f64::from(u16::from_be_bytes([bytes[0], bytes[1]])),
        DataType::I16 => f64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
        DataType::Bool => {
            let word = u16::from_be_bytes([bytes[0], bytes[1]]);
            f64::from((word >> tag.bit.unwrap_or(0).min(15)) & 1)
        }
        DataType::U32 => f64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::I32 => f64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::F32 => f64::from(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        DataType::U64 => {
            u64::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]) as f64
        }
        DataType::F64 => {
            f64::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
        }
    };
    Some(scaled(tag, raw))
}

pub(super) fn scaled(tag: &Tag, raw: f64) -> f64 {
    if tag.scale == 1.0 && tag.offset == 0.0 { raw } else { raw * tag.scale + tag.offset }
}

/// OPC UA status codes (top 16 bits) used for Modbus failures.
pub(super) mod status {
    /// Bad_NotSupported: illegal function.
    pub const NOT_SUPPORTED: u16 = 0x003D;
    /// Bad_NodeIdUnknown: illegal data address.
    pub const UNKNOWN_ADDRESS: u16 = 0x0034;
    /// Bad_OutOfRange: illegal data value.
    pub const OUT_OF_RANGE: u16 = 0x003C;
    /// Bad_DeviceFailure: server device failure, busy, gateway errors.
    pub const DEVICE_FAILURE: u16 = 0x008B;
    /// Bad_CommunicationError: connection lost or refused, malformed response.
    pub const COMMUNICATION: u16 = 0x0005;
    /// Bad_Timeout.
    pub const TIMEOUT: u16 = 0x000A;
}

/// The quality of samples whose read ended in a Modbus exception.
pub fn exception_quality(code: ExceptionCode) -> Quality {
    let sub = match code {
        ExceptionCode::IllegalFunction => status::NOT_SUPPORTED,
        ExceptionCode::IllegalDataAddress => status::UNKNOWN_ADDRESS,
        ExceptionCode::IllegalDataValue => status::OUT_OF_RANGE,
        _ => status::DEVICE_FAILURE,
    };
    Quality::new(Severity::Bad, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(table: Table, address: u16, data_type: DataType) -> Tag {
        Tag {
            asset: "a".into(),
            signal: format!("s{address}"),
            table,
            address,
            data_type,
            order: Order::Abcd,
            bit: None,
            scale: 1.0,
            offset: 0.0,
        }
    }

    #[test]
    fn contiguous_tags_share_requests_within_protocol_limits() {
        let tags = vec![
            tag(Table::Holding, 0, DataType::U16),
            tag(Table::Holding, 1, DataType::F32),
            tag(Table::Holding, 10, DataType::F64),
            tag(Table::Holding, 100, DataType::U16),
            tag(Table::Holding, 124, DataType::U32),
            tag(Table::Input, 0, DataType::U16),
            tag(Table::Coil, 5, DataType::Bool),
            tag(Table::Coil, 1999, DataType::Bool),
        ];
        let reads = plan(&tags, 8);
        let shape: Vec<(Table, u16, u16)> = reads.iter().map(|r| (r.table, r.start, r.count)).collect();
        assert_eq!(
            shape,
            [
                (Table::Holding, 0, 14),
                (Table::Holding, 100, 1),
                (Table::Holding, 124, 2),
                (Table::Input, 0, 1),
                (Table::Coil, 5, 1),
                (Table::Coil, 1999, 1)
            ]
        );
        // A gap of up to `max_gap` is read through rather than paying another request.
        let near = plan(&[tag(Table::Holding, 0, DataType::U16), tag(Table::Holding, 9, DataType::U16)], 8);
        assert_eq!(near.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(), [(0, 10)]);
        // 125 registers is the limit: a tag that would make the read longer starts a new one.
        let wide: Vec<Tag> = (0..70).map(|k| tag(Table::Holding, k * 2, DataType::U32)).collect();
        let reads = plan(&wide, 0);
        assert!(reads.iter().all(|r| r.count <= 125), "{reads:?}");
        assert_eq!(reads.iter().map(|r| r.tags.len()).sum::<usize>(), 70);
    }

    #[test]
    fn every_type_and_order_decodes() {
        let f = 1234.5f32.to_bits();
        let (hi, lo) = ((f >> 16) as u16, f as u16);
        let mut t = tag(Table::Holding, 0, DataType::F32);
        assert_eq!(decode_registers(&t, &[hi, lo]), Some(1234.5));
        t.order = Order::Cdab;
        assert_eq!(decode_registers(&t, &[lo, hi]), Some(1234.5));
        t.order = Order::Badc;
        assert_eq!(decode_registers(&t, &[hi.swap_bytes(), lo.swap_bytes()]), Some(1234.5));
        t.order = Order::Dcba;
        assert_eq!(decode_registers(&t, &[lo.swap_bytes(), hi.swap_bytes()]), Some(1234.5));
        let d = (-2.25f64).to_bits();
        let words = [(d >> 48) as u16, (d >> 32) as u16, (d >> 16) as u16, d as u16];
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::F64), &words), Some(-2.25));
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::I16), &[0xfffe]), Some(-2.0));
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::U32), &[1, 2]), Some(65538.0));
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::I32), &[0xffff, 0xfffd]), Some(-3.0));
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::U64), &[0, 0, 1, 0]), Some(65536.0));
        let mut bit = tag(Table::Holding, 0, DataType::Bool);
        bit.bit = Some(3);
        assert_eq!((decode_registers(&bit, &[0b1000]), decode_registers(&bit, &[0b0111])), (Some(1.0), Some(0.0)));
        let mut temperature = tag(Table::Input, 0, DataType::I16);
        (temperature.scale, temperature.offset) = (0.1, -40.0);
        assert!((decode_registers(&temperature, &[650]).unwrap_or(0.0) - 25.0).abs() < 1e-9);
        assert_eq!(decode_registers(&tag(Table::Holding, 0, DataType::F64), &[1, 2]), None, "too few registers");
    }

    #[test]
    fn exceptions_map_to_bad_quality_with_a_reason() {
        let q = exception_quality(ExceptionCode::IllegalDataAddress);
        assert_eq!((q.severity(), q.sub_code()), (Severity::Bad, status::UNKNOWN_ADDRESS));
        assert_eq!(exception_quality(ExceptionCode::ServerDeviceBusy).sub_code(), status::DEVICE_FAILURE);
    }
}
