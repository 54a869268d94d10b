//! Whatever registers a device returns, and whatever tag map is configured, decoding
//! and read planning never panic, and every planned read stays within the protocol's
//! limits and covers its tags.
#![no_main]
use edge::modbus::{DataType, Order, Table, Tag, decode_registers, plan};

fn tag(bytes: &[u8]) -> Tag {
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    Tag {
        asset: "a".into(),
        signal: "s".into(),
        table: [Table::Holding, Table::Input, Table::Coil, Table::Discrete][usize::from(b(0) % 4)],
        address: u16::from_le_bytes([b(1), b(2)]),
        data_type: [DataType::U16, DataType::I16, DataType::U32, DataType::I32, DataType::U64, DataType::F32, DataType::F64, DataType::Bool]
            [usize::from(b(3) % 8)],
        order: [Order::Abcd, Order::Cdab, Order::Badc, Order::Dcba][usize::from(b(4) % 4)],
        bit: Some(b(5)),
        scale: f64::from(b(6)) / 7.0,
        offset: f64::from(b(7)),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let tags: Vec<Tag> = data.chunks(8).take(64).map(tag).collect();
    let words: Vec<u16> = data.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
    for t in &tags {
        let _ = decode_registers(t, &words);
    }
    let reads = plan(&tags, u16::from(data.first().copied().unwrap_or(0) % 16));
    for read in &reads {
        let limit = if matches!(read.table, Table::Coil | Table::Discrete) { 2000 } else { 125 };
        assert!(read.count <= limit, "{read:?}");
        for &i in &read.tags {
            let t = &tags[i];
            assert!(t.address >= read.start && u32::from(t.address) + u32::from(t.width()) <= u32::from(read.start) + u32::from(read.count));
        }
    }
    assert_eq!(reads.iter().map(|r| r.tags.len()).sum::<usize>(), tags.len());
});
