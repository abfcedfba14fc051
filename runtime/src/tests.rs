use crate::params::{secure_glwe_bound, secure_lwe_bound};
use crate::program::{decode, encode, Instr, Origin, Port, Program, Table};
use crate::{io, ParamSet, RawParamSet};

fn raw() -> RawParamSet {
    RawParamSet {
        lwe_dimension: 880,
        glwe_dimension: 2,
        polynomial_size: 1024,
        lwe_noise_bound_log2: secure_lwe_bound(880),
        glwe_noise_bound_log2: secure_glwe_bound(2, 1024),
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    }
}

#[test]
fn parameter_sets_below_the_security_curve_do_not_exist() {
    assert!(ParamSet::new(raw()).is_ok());
    let mut r = raw();
    r.lwe_noise_bound_log2 -= 1;
    let e = ParamSet::new(r).unwrap_err().to_string();
    assert!(e.contains("insecure") && e.contains("n=880"), "{e}");
    let mut r = raw();
    r.glwe_noise_bound_log2 -= 1;
    assert!(ParamSet::new(r).unwrap_err().to_string().contains("insecure"));
    for bad in [
        RawParamSet {
            polynomial_size: 1000,
            ..raw()
        },
        RawParamSet {
            pbs_base_log: 0,
            ..raw()
        },
        RawParamSet {
            ks_base_log: usize::MAX / 2,
            ks_level: 4,
            ..raw()
        },
        RawParamSet {
            glwe_dimension: 0,
            ..raw()
        },
    ] {
        assert!(ParamSet::new(bad).is_err(), "{bad:?}");
    }
    // deserialisation goes through the same check
    let mut r = raw();
    r.lwe_noise_bound_log2 = 2;
    let bytes = bincode::serialize(&r).unwrap();
    assert!(bincode::deserialize::<ParamSet>(&bytes).is_err());
    // the test-only escape hatch is what it says
    assert!(!ParamSet::insecure_for_tests(r).is_secure());
}

#[test]
fn encode_decode_round_trip_with_noise() {
    for scale in [1u32, 20, 40, 59, 62] {
        let max = (1i64 << (62 - scale.min(62))).min(1 << 40);
        for v in [-max, -1, 0, 1, max - 1] {
            let t = encode(v, scale);
            let noise = (1u64 << (scale - 1)) - 1;
            assert_eq!(decode(t.wrapping_add(noise), scale), v);
            assert_eq!(decode(t.wrapping_sub(noise), scale), v);
        }
    }
}

fn program() -> Program {
    Program {
        name: "p".into(),
        params: ParamSet::new(raw()).unwrap(),
        inputs: vec![Port {
            name: "x".into(),
            shape: vec![2],
            width: 3,
            signed: false,
            scale: 60,
            slots: vec![0],
        }],
        outputs: vec![Port {
            name: "y".into(),
            shape: vec![2],
            width: 4,
            signed: false,
            scale: 59,
            slots: vec![3, 2],
        }],
        num_input_slots: 2,
        instrs: vec![
            Instr::Linear {
                terms: vec![(0, 2), (1, 1)],
                constant: encode(1, 60),
            },
            Instr::Pbs {
                input: 2,
                shift: 0,
                offset: 0,
                table: 0,
            },
        ],
        tables: vec![Table {
            precision: 3,
            values: (0..8).map(|m| encode(7 - m, 59)).collect(),
        }],
        instr_origin: vec![0, 0],
        origins: vec![Origin {
            op: "t".into(),
            location: None,
        }],
        noise: Default::default(),
    }
}

#[test]
fn simulation_follows_the_encoding() {
    let p = program();
    p.validate().unwrap();
    // x = [1, 2]: slot2 = 2·1 + 2 + 1 = 5 (scale 60) → table: 7 − 5 = 2 (scale 59)
    let s = p.simulate_slots(&[encode(1, 60), encode(2, 60)]);
    assert_eq!(decode(s[3], 59), 2);
    assert_eq!(decode(s[2], 60), 5);
}

#[test]
fn invalid_programs_are_rejected() {
    let mut p = program();
    p.instrs[0] = Instr::Linear {
        terms: vec![(3, 1)],
        constant: 0,
    };
    assert!(p.validate().is_err(), "reads a slot not yet written");
    let mut p = program();
    p.instrs[1] = Instr::Pbs {
        input: 2,
        shift: 64,
        offset: 0,
        table: 0,
    };
    assert!(p.validate().is_err(), "shift");
    let mut p = program();
    p.tables[0].values.pop();
    assert!(p.validate().is_err(), "table size");
    let mut p = program();
    p.outputs[0].slots[0] = 9;
    assert!(p.validate().is_err(), "output slot");
    let mut p = program();
    p.num_input_slots = 3;
    assert!(p.validate().is_err(), "input slots");
}

#[test]
fn damaged_program_files_are_errors() {
    let bytes = io::program_to_bytes(&program()).unwrap();
    assert_eq!(io::program_from_bytes(&bytes).unwrap(), program());
    for cut in 0..bytes.len() {
        assert!(io::program_from_bytes(&bytes[..cut]).is_err(), "prefix {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(io::program_from_bytes(&longer).is_err(), "trailing bytes");
    // single-byte corruptions: an error or a valid program, never a panic
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.clone();
        let i = (state % b.len() as u64) as usize;
        b[i] ^= (state >> 32) as u8 | 1;
        if let Ok(p) = io::program_from_bytes(&b) {
            p.validate().unwrap();
        }
    }
    let e = io::client_keys_from_bytes(&bytes).err().unwrap().to_string();
    assert!(e.contains("holds a compiled program"), "{e}");
}
