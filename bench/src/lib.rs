//! The benchmark's device: a three-phase meter whose 60 holding registers decode into 40 fields
//! (14 f32 in CDAB word order, 20 u16, 6 u32 in CDAB word order), the shape of a substation
//! meter behind an RS-485 serial server. Shared by the device server and the floor poller; the
//! gateway reads the same map through `bench/bench-meter.toml`.

/// Registers per device, read with one request.
pub const REGISTERS: u16 = 60;

/// The f32 fields (registers 0–27, two each, CDAB).
pub const F32_FIELDS: [&str; 14] = [
    "ua_v",
    "ub_v",
    "uc_v",
    "uab_v",
    "ubc_v",
    "uca_v",
    "ia_a",
    "ib_a",
    "ic_a",
    "p_kw",
    "q_kvar",
    "s_kva",
    "pf",
    "frequency_hz",
];
/// The u16 fields (registers 28–47), scaled by 0.1.
pub const U16_FIELDS: [&str; 20] = [
    "thd_ua_pct",
    "thd_ub_pct",
    "thd_uc_pct",
    "thd_ia_pct",
    "thd_ib_pct",
    "thd_ic_pct",
    "unbalance_u_pct",
    "unbalance_i_pct",
    "t_a_c",
    "t_b_c",
    "t_c_c",
    "t_n_c",
    "demand_kw",
    "demand_max_kw",
    "ct_ratio",
    "pt_ratio",
    "di_word",
    "do_word",
    "alarm_word",
    "comm_count",
];
/// The u32 fields (registers 48–59, two each, CDAB).
pub const U32_FIELDS: [&str; 6] = [
    "import_energy_kwh",
    "export_energy_kwh",
    "import_kvarh",
    "export_kvarh",
    "run_hours",
    "pulse_count",
];

/// The registers of `unit` at poll number `tick`: healthy values that move a little.
pub fn registers(unit: u8, tick: u64) -> Vec<u16> {
    let wobble = ((tick + u64::from(unit)) % 7) as f32 * 0.1;
    let f32s: [f32; 14] = [
        229.5 + wobble,
        230.0 + wobble,
        230.4 - wobble,
        398.0 + wobble,
        398.6,
        399.1 - wobble,
        41.0 + wobble,
        40.2,
        42.3 - wobble,
        27.9 + wobble,
        6.1,
        28.6 + wobble,
        0.97,
        50.0 - wobble / 10.0,
    ];
    let mut words = Vec::with_capacity(usize::from(REGISTERS));
    for value in f32s {
        let bits = value.to_bits();
        // CDAB: the low word first.
        words.push(bits as u16);
        words.push((bits >> 16) as u16);
    }
    for (i, _) in U16_FIELDS.iter().enumerate() {
        words.push(20 + i as u16 * 3 + (tick % 5) as u16);
    }
    for (i, _) in U32_FIELDS.iter().enumerate() {
        let value = 1_000_000 * (i as u32 + 1) + tick as u32 + u32::from(unit);
        words.push(value as u16);
        words.push((value >> 16) as u16);
    }
    words
}

/// Decodes the 60 registers into the 40 named values, appending them to `out`.
pub fn decode(words: &[u16], out: &mut Vec<(&'static str, f64)>) {
    let pair = |at: usize| u32::from(words[at]) | (u32::from(words[at + 1]) << 16);
    for (i, name) in F32_FIELDS.iter().enumerate() {
        out.push((name, f64::from(f32::from_bits(pair(2 * i)))));
    }
    for (i, name) in U16_FIELDS.iter().enumerate() {
        out.push((name, f64::from(words[28 + i]) * 0.1));
    }
    for (i, name) in U32_FIELDS.iter().enumerate() {
        out.push((name, f64::from(pair(48 + 2 * i))));
    }
}

/// The number after `name` on the command line, `default` without one; an error naming the
/// flag when it is not a number.
pub fn number_arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} takes a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_registers_decode_into_forty_fields_with_the_values_encoded() {
        let words = registers(4, 3);
        assert_eq!(words.len(), usize::from(REGISTERS));
        let mut fields = Vec::new();
        decode(&words, &mut fields);
        assert_eq!(fields.len(), 40);
        assert_eq!(fields[0].0, "ua_v");
        assert!((fields[0].1 - 229.5).abs() < 1e-3, "{}", fields[0].1);
        assert_eq!(fields[34], ("import_energy_kwh", 1_000_007.0));
    }

    #[test]
    fn a_flag_without_a_number_is_an_error_that_names_it() {
        let args: Vec<String> = ["x", "--units", "ten"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(number_arg(&args, "--port", 7), Ok(7));
        assert_eq!(
            number_arg(&args, "--units", 100),
            Err("--units takes a whole number".to_string())
        );
    }
}
