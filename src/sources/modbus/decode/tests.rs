//! Hand-computed vectors for every type × word order. The IEEE-754 bit patterns were computed
//! independently (Python `struct.pack`), not with this decoder.

use super::*;
use crate::config::{PointConfig, PointType, Ratio, WordOrder};

fn point(kind: PointType, order: WordOrder) -> PointConfig {
    PointConfig {
        name: "x".into(),
        unit: None,
        label: None,
        fc: 3,
        address: 0,
        kind,
        order,
        bit: None,
        length: None,
        scale: 1.0,
        offset: 0.0,
        ratio: None,
        interval: None,
    }
}

fn decode(kind: PointType, order: WordOrder, words: &[u16]) -> Value {
    PointDecoder::new(&point(kind, order), 1.0, 1.0)
        .decode_words(words, 0)
        .unwrap()
}

use WordOrder::{ABCD, BADC, CDAB, DCBA};

#[test]
fn u16_and_i16_in_every_order() {
    assert_eq!(decode(PointType::U16, ABCD, &[0x1234]), Value::UInt(0x1234));
    assert_eq!(decode(PointType::U16, CDAB, &[0x1234]), Value::UInt(0x1234));
    assert_eq!(decode(PointType::U16, BADC, &[0x3412]), Value::UInt(0x1234));
    assert_eq!(decode(PointType::U16, DCBA, &[0x3412]), Value::UInt(0x1234));
    assert_eq!(decode(PointType::I16, ABCD, &[0xFF38]), Value::Int(-200));
    assert_eq!(decode(PointType::I16, CDAB, &[0xFF38]), Value::Int(-200));
    assert_eq!(decode(PointType::I16, BADC, &[0x38FF]), Value::Int(-200));
    assert_eq!(decode(PointType::I16, DCBA, &[0x38FF]), Value::Int(-200));
}

#[test]
fn u32_and_i32_in_every_order() {
    let v = Value::UInt(0x1234_5678);
    assert_eq!(decode(PointType::U32, ABCD, &[0x1234, 0x5678]), v);
    assert_eq!(decode(PointType::U32, CDAB, &[0x5678, 0x1234]), v);
    assert_eq!(decode(PointType::U32, BADC, &[0x3412, 0x7856]), v);
    assert_eq!(decode(PointType::U32, DCBA, &[0x7856, 0x3412]), v);
    let v = Value::Int(-2); // 0xFFFFFFFE
    assert_eq!(decode(PointType::I32, ABCD, &[0xFFFF, 0xFFFE]), v);
    assert_eq!(decode(PointType::I32, CDAB, &[0xFFFE, 0xFFFF]), v);
    assert_eq!(decode(PointType::I32, BADC, &[0xFFFF, 0xFEFF]), v);
    assert_eq!(decode(PointType::I32, DCBA, &[0xFEFF, 0xFFFF]), v);
}

#[test]
fn u64_and_i64_in_every_order() {
    let v = Value::UInt(0x0102_0304_0506_0708);
    assert_eq!(
        decode(PointType::U64, ABCD, &[0x0102, 0x0304, 0x0506, 0x0708]),
        v
    );
    assert_eq!(
        decode(PointType::U64, CDAB, &[0x0708, 0x0506, 0x0304, 0x0102]),
        v
    );
    assert_eq!(
        decode(PointType::U64, BADC, &[0x0201, 0x0403, 0x0605, 0x0807]),
        v
    );
    assert_eq!(
        decode(PointType::U64, DCBA, &[0x0807, 0x0605, 0x0403, 0x0201]),
        v
    );
    let v = Value::Int(-1_234_567_890_123); // 0xFFFFFEE08E04FB35
    assert_eq!(
        decode(PointType::I64, ABCD, &[0xFFFF, 0xFEE0, 0x8E04, 0xFB35]),
        v
    );
    assert_eq!(
        decode(PointType::I64, CDAB, &[0xFB35, 0x8E04, 0xFEE0, 0xFFFF]),
        v
    );
    assert_eq!(
        decode(PointType::I64, BADC, &[0xFFFF, 0xE0FE, 0x048E, 0x35FB]),
        v
    );
    assert_eq!(
        decode(PointType::I64, DCBA, &[0x35FB, 0x048E, 0xE0FE, 0xFFFF]),
        v
    );
}

#[test]
fn f32_in_every_order_keeps_the_shortest_decimal() {
    let v = Value::Float(0.47); // 0x3EF0A3D7
    assert_eq!(decode(PointType::F32, ABCD, &[0x3EF0, 0xA3D7]), v);
    assert_eq!(decode(PointType::F32, CDAB, &[0xA3D7, 0x3EF0]), v);
    assert_eq!(decode(PointType::F32, BADC, &[0xF03E, 0xD7A3]), v);
    assert_eq!(decode(PointType::F32, DCBA, &[0xD7A3, 0xF03E]), v);
    assert_eq!(
        decode(PointType::F32, ABCD, &[0x4365, 0xCCCD]),
        Value::Float(229.8)
    );
    assert_eq!(
        decode(PointType::F32, CDAB, &[0x0000, 0xC148]),
        Value::Float(-12.5)
    );
}

#[test]
fn f64_in_every_order() {
    let v = Value::Float(1234.5678); // 0x40934A456D5CFAAD
    assert_eq!(
        decode(PointType::F64, ABCD, &[0x4093, 0x4A45, 0x6D5C, 0xFAAD]),
        v
    );
    assert_eq!(
        decode(PointType::F64, CDAB, &[0xFAAD, 0x6D5C, 0x4A45, 0x4093]),
        v
    );
    assert_eq!(
        decode(PointType::F64, BADC, &[0x9340, 0x454A, 0x5C6D, 0xADFA]),
        v
    );
    assert_eq!(
        decode(PointType::F64, DCBA, &[0xADFA, 0x5C6D, 0x454A, 0x9340]),
        v
    );
    let v = Value::Float(-0.001); // 0xBF50624DD2F1A9FC
    assert_eq!(
        decode(PointType::F64, ABCD, &[0xBF50, 0x624D, 0xD2F1, 0xA9FC]),
        v
    );
}

#[test]
fn strings_stop_at_nul_and_honour_byte_swap() {
    let mut p = point(PointType::String, ABCD);
    p.length = Some(3);
    let d = PointDecoder::new(&p, 1.0, 1.0);
    // "PUMP" then NUL padding.
    assert_eq!(
        d.decode_words(&[0x5055, 0x4D50, 0x0000], 0),
        Ok(Value::Text("PUMP".into()))
    );
    p.order = BADC;
    let d = PointDecoder::new(&p, 1.0, 1.0);
    assert_eq!(
        d.decode_words(&[0x5550, 0x504D, 0x2020], 0),
        Ok(Value::Text("PUMP".into()))
    );
}

#[test]
fn bit_of_a_register() {
    let mut p = point(PointType::Bit, ABCD);
    for (bit, expected) in [(0, true), (1, false), (2, true), (8, true), (15, false)] {
        p.bit = Some(bit);
        let d = PointDecoder::new(&p, 1.0, 1.0);
        assert_eq!(
            d.decode_words(&[0x0105], 0),
            Ok(Value::Bool(expected)),
            "bit {bit}"
        );
    }
}

#[test]
fn coils_decode_as_bools_at_their_offset() {
    let mut p = point(PointType::Bool, ABCD);
    p.fc = 1;
    let d = PointDecoder::new(&p, 1.0, 1.0);
    assert_eq!(d.decode_bits(&[false, true], 1), Ok(Value::Bool(true)));
    assert!(matches!(
        d.decode_bits(&[false], 1),
        Err(DecodeError::ShortReply { .. })
    ));
}

#[test]
fn scale_offset_and_transformer_ratios() {
    let mut p = point(PointType::U16, ABCD);
    p.scale = 0.01;
    let d = PointDecoder::new(&p, 1.0, 1.0);
    assert_eq!(d.decode_words(&[4710], 0), Ok(Value::Float(47.1)));

    // Acrel current: raw 289 × 0.01 × CT 300 = 867 A (DOMAIN.md §3.7.1).
    p.ratio = Some(Ratio::Ct);
    let d = PointDecoder::new(&p, 300.0, 1.0);
    assert_eq!(d.decode_words(&[289], 0), Ok(Value::Float(867.0)));

    // HV phase voltage: raw 577 × 0.1 × PT 100 = 5770 V.
    p.scale = 0.1;
    p.ratio = Some(Ratio::Pt);
    let d = PointDecoder::new(&p, 15.0, 100.0);
    assert_eq!(d.decode_words(&[577], 0), Ok(Value::Float(5770.0)));

    // Temperature with an offset: raw −200 × 0.1 + 2 = −18 °C.
    let mut p = point(PointType::I16, ABCD);
    p.scale = 0.1;
    p.offset = 2.0;
    let d = PointDecoder::new(&p, 1.0, 1.0);
    assert_eq!(d.decode_words(&[0xFF38], 0), Ok(Value::Float(-18.0)));
}

#[test]
fn points_are_read_at_their_offset_in_a_longer_reply() {
    let d = PointDecoder::new(&point(PointType::F32, CDAB), 1.0, 1.0);
    let reply = [0, 0, 0xA3D7, 0x3EF0, 7];
    assert_eq!(d.decode_words(&reply, 2), Ok(Value::Float(0.47)));
}

#[test]
fn nan_from_a_float_register_is_refused() {
    let d = PointDecoder::new(&point(PointType::F32, ABCD), 1.0, 1.0);
    assert!(matches!(
        d.decode_words(&[0x7FC0, 0x0000], 0),
        Err(DecodeError::NotFinite(_))
    ));
}

#[test]
fn a_short_reply_is_an_error_not_a_panic() {
    let d = PointDecoder::new(&point(PointType::U64, ABCD), 1.0, 1.0);
    assert_eq!(
        d.decode_words(&[1, 2, 3], 0),
        Err(DecodeError::ShortReply {
            start: 0,
            end: 4,
            len: 3
        })
    );
}

#[test]
fn f32_widening_matches_the_decimal_text_at_the_extremes() {
    // The longest decimal forms an f32 has (the smallest subnormal, the largest finite value),
    // and a few everyday ones, each widen to the f64 its own text parses to.
    for v in [
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        0.47,
        -0.0,
        229.9,
        16_777_217.0,
    ] {
        let expected: f64 = v.to_string().parse().unwrap();
        assert_eq!(shortest_f64(v).to_bits(), expected.to_bits(), "{v}");
    }
    assert!(shortest_f64(f32::NAN).is_nan());
    assert_eq!(shortest_f64(f32::INFINITY), f64::INFINITY);
    // Across all exponents, the widened value is a shortest decimal of the f32: it narrows back
    // to the same f32 and is written with as many characters as the f32 itself. (When two
    // shortest decimals are equally near, as -2827637.25 between …7.2 and …7.3, ryu and `Display`
    // may pick different ones; both are exact enough for the f32.)
    let mut bits = 0x1234_5678u32;
    for _ in 0..200_000 {
        bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let v = f32::from_bits(bits);
        if v.is_finite() {
            let widened = shortest_f64(v);
            assert_eq!((widened as f32).to_bits(), v.to_bits(), "{v}");
            assert_eq!(widened.to_string().len(), v.to_string().len(), "{v}");
        }
    }
}
