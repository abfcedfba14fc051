use crate::params::{secure_glwe_bound, secure_lwe_bound};
use crate::program::{decode, encode, Instr, Origin, Port, Program, Table};
use crate::{io, ClearTensor, ParamSet, RawParamSet, RuntimeError};

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
        ks_modulus_log2: 64,
        bsk_rounding_log2: 0,
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
        RawParamSet {
            bsk_rounding_log2: crate::params::MAX_BSK_ROUNDING_LOG2 + 1,
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
        partitions: vec![ParamSet::new(raw()).unwrap()],
        inputs: vec![Port {
            name: "x".into(),
            shape: vec![2],
            width: 3,
            signed: false,
            scale: 60,
            slots: vec![0],
            clear: false,
            range: None,
        }],
        outputs: vec![Port {
            name: "y".into(),
            shape: vec![2],
            width: 4,
            signed: false,
            scale: 59,
            slots: vec![3, 2],
            clear: false,
            range: None,
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
                partition: 0,
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

/// Declared input ranges: inside the type, checked by `validate`, refused by simulation outside;
/// outputs outside their type are reported, not returned.
#[test]
fn declared_ranges_and_output_types_are_checked() {
    let mut p = program();
    p.inputs[0].range = Some((1, 5));
    p.validate().unwrap();
    let x = |a: i64, b: i64| vec![vec![ClearTensor::new(vec![2], vec![a, b]).unwrap()]];
    p.simulate(&x(1, 2)).unwrap();
    let e = p.simulate(&x(1, 6)).err().unwrap();
    assert!(
        matches!(e, RuntimeError::Range(_)) && e.to_string().contains("element 1 is 6"),
        "{e}"
    );
    let e = p.simulate(&x(0, 2)).err().unwrap();
    assert!(matches!(e, RuntimeError::Range(_)), "{e}");
    for bad in [(0, 8), (5, 1), (-1, 3)] {
        let mut q = p.clone();
        q.inputs[0].range = Some(bad);
        assert!(q.validate().is_err(), "range {bad:?} of a 3-bit unsigned input");
    }
    let mut q = program();
    q.outputs[0].range = Some((0, 1));
    assert!(q.validate().is_err(), "outputs declare no range");
    // an output narrower than what the program computes: the simulated value is refused
    let mut q = program();
    q.outputs[0].width = 1;
    let e = q.simulate(&x(1, 2)).err().unwrap();
    assert!(
        matches!(e, RuntimeError::Range(_)) && e.to_string().contains("output `y`"),
        "{e}"
    );
}

#[test]
fn simulation_follows_the_encoding() {
    let p = program();
    p.validate().unwrap();
    // x = [1, 2]: slot2 = 2·1 + 2 + 1 = 5 (scale 60) → table: 7 − 5 = 2 (scale 59)
    let s = p.simulate_slots(&[encode(1, 60), encode(2, 60)], &[]);
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
        partition: 0,
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

/// `x` encrypted (2 elements), `w` clear (2 elements), one `ClearLinear`:
/// `y = 3·x0 + w0·x1 − 2·w1·x0 + w1·2^60 + 1·2^60`.
fn clear_program() -> Program {
    let mut p = program();
    p.inputs.push(Port {
        name: "w".into(),
        shape: vec![2],
        width: 4,
        signed: true,
        scale: 0,
        slots: vec![0],
        clear: true,
        range: None,
    });
    p.instrs = vec![Instr::ClearLinear {
        terms: vec![(0, 3)],
        products: vec![(1, 0, 1), (0, 1, -2)],
        clear_constants: vec![(1, encode(1, 60))],
        constant: encode(1, 60),
    }];
    p.instr_origin = vec![0];
    p.tables.clear();
    p.outputs[0].slots = vec![2, 2];
    p.outputs[0].scale = 60;
    p.outputs[0].signed = true;
    p
}

#[test]
fn clear_linear_simulates_and_is_validated() {
    let p = clear_program();
    p.validate().unwrap();
    assert_eq!(p.num_clear_values(), 2);
    // x = [1, 2], w = [-3, 5]: 3 − 6 − 10 + 5 + 1 = −7
    let s = p.simulate_slots(&[encode(1, 60), encode(2, 60)], &[-3, 5]);
    assert_eq!(decode(s[2], 60), -7);
    let out = p
        .simulate(&[vec![
            crate::ClearTensor::new(vec![2], vec![1, 2]).unwrap(),
            crate::ClearTensor::new(vec![2], vec![-3, 5]).unwrap(),
        ]])
        .unwrap();
    assert_eq!(out[0][0].values, [-7, -7]);
    // a clear value outside its type is refused
    let e = p
        .simulate(&[vec![
            crate::ClearTensor::new(vec![2], vec![1, 2]).unwrap(),
            crate::ClearTensor::new(vec![2], vec![8, 0]).unwrap(),
        ]])
        .err()
        .unwrap();
    assert!(e.to_string().contains("input `w`"), "{e}");

    let mut bad = clear_program();
    bad.instrs[0] = Instr::ClearLinear {
        terms: vec![],
        products: vec![(0, 2, 1)],
        clear_constants: vec![],
        constant: 0,
    };
    assert!(bad.validate().is_err(), "clear index out of range");
    let mut bad = clear_program();
    bad.inputs[1].slots = vec![1];
    assert!(bad.validate().is_err(), "clear indices not consecutive");
    let mut bad = clear_program();
    bad.inputs[1].scale = 3;
    assert!(bad.validate().is_err(), "clear port with a scale");
    let mut bad = clear_program();
    bad.instrs[0] = Instr::ClearLinear {
        terms: vec![],
        products: vec![(2, 0, 1)],
        clear_constants: vec![],
        constant: 0,
    };
    assert!(bad.validate().is_err(), "reads its own slot");
    // the fingerprint covers the clear flag and the instruction
    let mut other = clear_program();
    other.inputs[1].clear = false;
    assert_ne!(other.fingerprint(), clear_program().fingerprint());
    let bytes = io::program_to_bytes(&clear_program()).unwrap();
    assert_eq!(io::program_from_bytes(&bytes).unwrap(), clear_program());
}

/// Clear values arrive with the ciphertexts; the server checks them against their port again.
#[test]
fn clear_values_are_checked_on_the_server() {
    use crate::values::{Ciphertexts, CtData, CtTensor, Direction};
    let p = clear_program();
    let cts = |w: Vec<i64>, samples: usize| Ciphertexts {
        program: p.fingerprint(),
        key_id: 1,
        direction: Direction::Inputs,
        samples,
        lwe_size: p.input_params().big_lwe_dimension() + 1,
        tensors: vec![
            CtTensor {
                port: "x".into(),
                shape: vec![2],
                data: CtData::Full(tfhe::core_crypto::prelude::LweCiphertextList::new(
                    0u64,
                    tfhe::core_crypto::prelude::LweSize(p.input_params().big_lwe_dimension() + 1),
                    tfhe::core_crypto::prelude::LweCiphertextCount(2 * samples),
                    crate::keys::modulus(),
                )),
            },
            CtTensor {
                port: "w".into(),
                shape: vec![2],
                data: CtData::Clear(w),
            },
        ],
    };
    cts(vec![-8, 7, 0, 1], 2)
        .check(&p.interface(), Direction::Inputs)
        .unwrap();
    let e = cts(vec![-8, 7, 0, 8], 2)
        .check(&p.interface(), Direction::Inputs)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("sample 1") && e.to_string().contains("outside the range"),
        "{e}"
    );
    let e = cts(vec![1, 2, 3], 2)
        .check(&p.interface(), Direction::Inputs)
        .err()
        .unwrap();
    assert!(e.to_string().contains("holds 3 values"), "{e}");
    // a declared range is the server's check too (the fingerprint covers it)
    let mut ranged = p.clone();
    ranged.inputs[1].range = Some((-3, 5));
    let mut c = cts(vec![-3, 5, 0, 6], 2);
    c.program = ranged.fingerprint();
    let e = c.check(&ranged.interface(), Direction::Inputs).err().unwrap();
    assert!(
        e.to_string().contains("sample 1") && e.to_string().contains("compiled for"),
        "{e}"
    );
    assert!(matches!(e, RuntimeError::Range(_)), "{e:?}");
    assert_ne!(ranged.fingerprint(), p.fingerprint());
    let mut swapped = cts(vec![0, 0], 1);
    swapped.tensors[1].data = CtData::Full(tfhe::core_crypto::prelude::LweCiphertextList::new(
        0u64,
        tfhe::core_crypto::prelude::LweSize(p.input_params().big_lwe_dimension() + 1),
        tfhe::core_crypto::prelude::LweCiphertextCount(2),
        crate::keys::modulus(),
    ));
    let e = swapped.check(&p.interface(), Direction::Inputs).err().unwrap();
    assert!(e.to_string().contains("takes clear values"), "{e}");
}

/// The executor's batched keyswitch (every code path: the widest this CPU has, and the portable one)
/// gives exactly what tfhe-rs's keyswitch gives — `keyswitch_lwe_ciphertext` into 64 bits,
/// `keyswitch_lwe_ciphertext_with_scalar_change` into 32 (KS32) — ciphertext by ciphertext, for
/// batches of 1, 5 and 16 (inputs are arbitrary torus vectors: the keyswitch is linear).
#[test]
fn batched_keyswitch_equals_tfhe_rs() {
    use crate::exec::KsWord;
    use crate::keys::Ksk;
    use tfhe::core_crypto::prelude::*;
    fn check<O: KsWord + std::fmt::Debug>(ksk: &LweKeyswitchKeyOwned<O>, big_len: usize, small_len: usize) {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for count in [1usize, 5, 16] {
            let inputs: Vec<u64> = (0..count * big_len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                })
                .collect();
            let mut want = vec![O::ZERO; count * small_len];
            for (inp, out) in inputs.chunks_exact(big_len).zip(want.chunks_exact_mut(small_len)) {
                let inp = LweCiphertext::from_container(inp, crate::keys::modulus());
                O::reference_keyswitch(ksk, &inp, out);
            }
            let mut got = vec![O::ONE; count * small_len];
            crate::exec::keyswitch_batch(ksk, &inputs, &mut got, big_len, small_len);
            assert!(got == want, "dispatched keyswitch, batch of {count}");
            let mut got = vec![O::ONE; count * small_len];
            crate::exec::keyswitch_batch_impl(ksk, &inputs, &mut got, big_len, small_len);
            assert!(got == want, "portable keyswitch, batch of {count}");
        }
    }
    let native = ParamSet::new(raw()).unwrap();
    let ks32 = native.with_ks_modulus(32).unwrap();
    for params in [native, ks32] {
        let ck = crate::ClientKeys::generate(&[params]).unwrap();
        let sk = ck
            .evaluation_keys(&crate::Progress::silent())
            .expand(&crate::Progress::silent())
            .unwrap();
        let (big_len, small_len) = (params.big_lwe_dimension() + 1, params.lwe_dimension() + 1);
        match (&sk.bootstrap(0).unwrap().ksk, params.ks32()) {
            (Ksk::Native(k), false) => check(k, big_len, small_len),
            (Ksk::Ks32(k), true) => check(k, big_len, small_len),
            _ => panic!("the keyswitch key's modulus is the parameters' ({params})"),
        }
    }
}

/// KS32 sets: the LWE noise at 2^32 meets the curve at that modulus (the same noise relative to
/// the modulus as at 2^64), their decomposition fits 32 bits, and they have their own fingerprint;
/// sets written before KS32 (the old layout, through the versioning and through serde) read as
/// 64-bit keyswitches with unchanged fingerprints.
#[test]
fn ks32_parameter_sets() {
    let native = ParamSet::new(raw()).unwrap();
    let ks32 = native.with_ks_modulus(32).unwrap();
    assert!(ks32.ks32() && !native.ks32());
    assert_eq!(ks32.raw().lwe_noise_bound_log2 + 32, native.raw().lwe_noise_bound_log2);
    assert_ne!(ks32.fingerprint(), native.fingerprint());
    assert!(ks32.to_string().contains("32-bit"), "{ks32}");
    let mut r = *ks32.raw();
    r.lwe_noise_bound_log2 -= 1;
    assert!(ParamSet::new(r).unwrap_err().to_string().contains("insecure"));
    for (base, level) in [(11, 3), (8, 5)] {
        let e = ParamSet::new(RawParamSet {
            ks_base_log: base,
            ks_level: level,
            ..*ks32.raw()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("32-bit keyswitch"), "{e}");
    }
    assert!(ParamSet::new(RawParamSet {
        ks_modulus_log2: 48,
        bsk_rounding_log2: 0,
        ..raw()
    })
    .is_err());
    // the old layout
    let old = crate::params::RawParamSetV0 {
        lwe_dimension: 880,
        glwe_dimension: 2,
        polynomial_size: 1024,
        lwe_noise_bound_log2: secure_lwe_bound(880),
        glwe_noise_bound_log2: secure_glwe_bound(2, 1024),
        pbs_base_log: 23,
        pbs_level: 1,
        ks_base_log: 3,
        ks_level: 5,
    };
    let back: crate::params::ParamSetV0 = bincode::deserialize(&bincode::serialize(&old).unwrap()).unwrap();
    assert_eq!(back.0, native);
    // the fingerprint as sets were fingerprinted before KS32
    let mut h = crate::params::Fnv::default();
    for v in [
        880u64,
        2,
        1024,
        old.lwe_noise_bound_log2 as u64,
        old.glwe_noise_bound_log2 as u64,
        23,
        1,
        3,
        5,
    ] {
        h.write(&v.to_le_bytes());
    }
    assert_eq!(native.fingerprint(), h.finish());
    // evaluation keys whose keyswitch key has the other modulus than their set's: refused
    let silent = crate::Progress::silent();
    let mut a = crate::ClientKeys::generate(&[ks32]).unwrap().evaluation_keys(&silent);
    let b = crate::ClientKeys::generate(&[native]).unwrap().evaluation_keys(&silent);
    assert!(a.check().is_ok() && b.check().is_ok());
    a.partitions[0].ksk = b.partitions.into_iter().next().unwrap().ksk;
    let e = a.check().unwrap_err().to_string();
    assert!(e.contains("do not match"), "{e}");
    // JSON without the field: a 64-bit keyswitch
    let mut json = serde_json::to_value(native).unwrap();
    json.as_object_mut().unwrap().remove("ks_modulus_log2");
    assert_eq!(serde_json::from_value::<ParamSet>(json).unwrap(), native);
}

/// Keys carry a random id: ciphertexts run only with the evaluation keys of the keygen that
/// encrypted them, and results decrypt only with its secret keys; anything else is a clear error.
#[test]
fn keys_of_another_keygen_are_refused() {
    use crate::{exec, ClearTensor, ClientKeys, Progress, RuntimeError};
    let p = clear_program();
    let silent = Progress::silent();
    let a = ClientKeys::generate(&p.partitions).unwrap();
    let b = ClientKeys::generate(&p.partitions).unwrap();
    assert_ne!(a.key_id(), b.key_id());
    let server_a = a.evaluation_keys_for(&p.interface(), &silent).expand(&silent).unwrap();
    let server_b = b.evaluation_keys_for(&p.interface(), &silent).expand(&silent).unwrap();
    assert_eq!(server_a.key_id(), a.key_id());
    let sample = vec![
        ClearTensor::new(vec![2], vec![3, 5]).unwrap(),
        ClearTensor::new(vec![2], vec![-2, 1]).unwrap(),
    ];
    let run = |keys| {
        exec::run(
            &p,
            keys,
            a.encrypt(&p.interface(), std::slice::from_ref(&sample)).unwrap(),
            &silent,
            None,
        )
    };
    let e = run(&server_b).err().unwrap();
    assert!(
        matches!(e, RuntimeError::KeyMismatch(_)) && e.to_string().contains("other keys"),
        "{e}"
    );
    let out = run(&server_a).unwrap();
    assert_eq!(out.key_id(), a.key_id());
    assert_eq!(a.decrypt(&p.interface(), &out).unwrap(), p.simulate(&[sample]).unwrap());
    let e = b.decrypt(&p.interface(), &out).err().unwrap();
    assert!(matches!(e, RuntimeError::KeyMismatch(_)), "{e}");
}

/// Secret keys: the file round trip keeps them; the serialised copy is wiped after writing; a
/// dropped `ClientKeys` wipes its key material (checked through the same `wipe` the drop calls).
#[test]
fn secret_keys_round_trip_and_are_wiped() {
    use crate::keys::ClientKeysFile;
    use crate::ClientKeys;
    let p = program();
    let k = ClientKeys::generate(&p.partitions).unwrap();
    let bytes = io::client_keys_to_bytes(&k).unwrap();
    let back = io::client_keys_from_bytes(&bytes).unwrap();
    assert_eq!(back.key_id(), k.key_id());
    assert!(back.smalls[0].as_ref() == k.smalls[0].as_ref() && back.master.as_ref() == k.master.as_ref());
    assert!(
        k.master.as_ref().iter().any(|&b| b != 0),
        "a binary key of 2048 bits has ones"
    );
    let mut file = ClientKeysFile::of(&k);
    file.wipe();
    let wiped = file.into_keys();
    assert!(wiped.smalls[0]
        .as_ref()
        .iter()
        .chain(wiped.master.as_ref())
        .all(|&b| b == 0));
    assert_eq!(
        wiped.smalls[0].as_ref().len(),
        k.smalls[0].as_ref().len(),
        "wiped in place"
    );
}

/// Every 8-byte field of the metadata of key, ciphertext and program files set to hostile values
/// (0, 1, 2^32, all ones...): loading and checking is an error or a valid value, never a panic
/// (tfhe-rs's entities derive counts by dividing by sizes read from the file).
#[test]
fn crafted_size_fields_are_errors_not_panics() {
    use crate::values::Direction;
    use crate::{ClearTensor, ClientKeys, Progress};
    let silent = Progress::silent();
    let p = program();
    let k = ClientKeys::generate(&p.partitions).unwrap();
    let sample = vec![ClearTensor::new(vec![2], vec![1, 2]).unwrap()];
    let cts = io::ciphertexts_to_bytes(&k.encrypt(&p.interface(), &[sample.clone(), sample]).unwrap()).unwrap();
    let eval = io::evaluation_keys_to_bytes(&k.evaluation_keys(&silent)).unwrap();
    // a small set (the file is read once per hostile value)
    let ks32 = ParamSet::with_secure_noise(600, 1, 256, 15, 2, 2, 6)
        .and_then(|p| p.with_ks_modulus(32))
        .unwrap();
    let eval32 =
        io::evaluation_keys_to_bytes(&ClientKeys::generate(&[ks32]).unwrap().evaluation_keys(&silent)).unwrap();
    let secret = io::client_keys_to_bytes(&k).unwrap();
    let prog = io::program_to_bytes(&p).unwrap();
    type Load = Box<dyn Fn(&[u8])>;
    let files: Vec<(&str, Vec<u8>, Load)> = vec![
        (
            "evaluation keys (KS32)",
            eval32,
            Box::new(|b: &[u8]| {
                if let Ok(k) = io::evaluation_keys_from_bytes(b) {
                    let _ = k.size_bytes();
                }
            }),
        ),
        (
            "ciphertexts",
            cts,
            Box::new(|b: &[u8]| {
                if let Ok(c) = io::ciphertexts_from_bytes(b) {
                    let _ = c.check(&program().interface(), Direction::Inputs);
                    let _ = c.size_bytes();
                }
            }),
        ),
        (
            "evaluation keys",
            eval,
            Box::new(|b: &[u8]| {
                if let Ok(k) = io::evaluation_keys_from_bytes(b) {
                    let _ = k.size_bytes();
                }
            }),
        ),
        (
            "secret keys",
            secret,
            Box::new(|b: &[u8]| {
                let _ = io::client_keys_from_bytes(b);
            }),
        ),
        (
            "program",
            prog,
            Box::new(|b: &[u8]| {
                if let Ok(p) = io::program_from_bytes(b) {
                    let _ = crate::Limits::default().check_run(&p, 1);
                }
            }),
        ),
    ];
    let hostile = [0u64, 1, u64::MAX];
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut panics = Vec::new();
    for (name, bytes, load) in &files {
        load(bytes);
        // the header and metadata live at the start; sizes of trailing lists right before their data
        // and every word that reads as a small number (a size or count field) anywhere in the file
        let small = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap()) <= 1 << 24;
        let mut positions: Vec<usize> = (0..bytes.len().min(300))
            .chain(bytes.len().saturating_sub(64)..bytes.len())
            .chain((300..bytes.len().saturating_sub(64)).filter(|&i| small(i)))
            .collect();
        positions.sort_unstable();
        positions.dedup();
        for &i in &positions {
            for &v in &hostile {
                for width in [8usize] {
                    if i + width > bytes.len() {
                        continue;
                    }
                    let mut b = bytes.clone();
                    b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load(&b))).is_err() {
                        panics.push(format!("{name}: offset {i}, {width} bytes = {v:#x}"));
                    }
                }
            }
        }
    }
    std::panic::set_hook(prev);
    assert!(panics.is_empty(), "{} panics: {:?}", panics.len(), panics);
}

/// A small program file whose input shape asks for 2^31 slots: valid, but refused by the server's
/// resource limits before anything is allocated; limits parse from `name=value` with suffixes.
#[test]
fn resource_limits_refuse_programs_that_ask_for_terabytes() {
    use crate::{exec, ClearTensor, ClientKeys, Limits, Progress};
    let silent = Progress::silent();
    let mut huge = clear_program();
    huge.inputs[0].shape = vec![1 << 20, 1 << 11];
    huge.num_input_slots = 1 << 31;
    huge.instrs = vec![Instr::Linear {
        terms: vec![(0, 1)],
        constant: 0,
    }];
    huge.outputs[0].slots = vec![1 << 31, 1 << 31];
    huge.validate().unwrap();
    let bytes = io::program_to_bytes(&huge).unwrap();
    assert!(bytes.len() < 1000, "a file of {} bytes", bytes.len());
    let e = Limits::default().check_program(&huge).err().unwrap();
    assert!(
        matches!(e, RuntimeError::Limit(_)) && e.to_string().contains("max_sample_bytes"),
        "{e}"
    );
    // the server refuses it whatever the ciphertexts
    let p = clear_program();
    let k = ClientKeys::generate(&p.partitions).unwrap();
    let server = k.evaluation_keys_for(&p.interface(), &silent).expand(&silent).unwrap();
    let x = vec![
        ClearTensor::new(vec![2], vec![1, 2]).unwrap(),
        ClearTensor::new(vec![2], vec![0, 1]).unwrap(),
    ];
    let e = exec::run(
        &huge,
        &server,
        k.encrypt(&p.interface(), std::slice::from_ref(&x)).unwrap(),
        &silent,
        None,
    )
    .err()
    .unwrap();
    assert!(matches!(e, RuntimeError::Limit(_)), "{e}");
    // batches: the sample count is bounded
    let mut small = Limits::default();
    small.set("max_samples", "2").unwrap();
    let e = exec::run_with_limits(
        &p,
        &server,
        k.encrypt(&p.interface(), &[x.clone(), x.clone(), x.clone()]).unwrap(),
        &silent,
        None,
        &small,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("max_samples"), "{e}");
    exec::run_with_limits(
        &p,
        &server,
        k.encrypt(&p.interface(), &[x.clone(), x]).unwrap(),
        &silent,
        None,
        &small,
    )
    .unwrap();
    // parsing
    let mut l = Limits::default();
    l.set("max_sample_bytes", "2G").unwrap();
    assert_eq!(l.max_sample_bytes, 2 << 30);
    l.set("max_lookups", "1000").unwrap();
    assert_eq!(l.max_lookups, 1000);
    assert!(l.set("max_lookups", "-1").is_err());
    assert!(l.set("max_lookups", "99999999999T").is_err());
    assert!(l.set("max_things", "1").is_err());
    assert!(l.set("max_lookups", "5X").is_err());
}

/// Found by the `client_keys` fuzz target: a format-4 secret-key file whose GLWE key is empty made
/// the upgrade to format 5 panic (tfhe-rs refuses an empty key container); now an error. (The fuzz
/// smoke run replays it too.)
#[test]
fn fuzz_regression_client_keys_with_an_empty_key() {
    let bytes = include_bytes!("../tests/fixtures/fuzz-client-keys-empty-key.bin");
    let e = io::client_keys_from_bytes(bytes).err().expect("an error, not keys");
    assert!(
        matches!(
            e,
            RuntimeError::Format(_) | RuntimeError::Mismatch(_) | RuntimeError::Params(_)
        ),
        "{e:?}"
    );
}

/// Files of format 6 (before KS32: the parameter sets' old layout, partition keys without a 32-bit
/// keyswitch key), written by fhec at `5dd6b0a` for `fuzz/fixtures/linear.fhe`: the program, the
/// secret keys, the evaluation keys, an encrypted input and its result all read, and compute and
/// decrypt as they did (`[[4, 10]]` for `x = [[1, 2, 3, 4]]`).
#[test]
fn files_of_format_6_still_read_and_run() {
    use crate::{ClearTensor, Progress};
    let program = io::program_from_bytes(include_bytes!("../tests/fixtures/format6/lin.fhecp")).unwrap();
    let ck = io::client_keys_from_bytes(include_bytes!("../tests/fixtures/format6/lin.ck")).unwrap();
    let ek = io::evaluation_keys_from_bytes(include_bytes!("../tests/fixtures/format6/lin.ek")).unwrap();
    let old_in = io::ciphertexts_from_bytes(include_bytes!("../tests/fixtures/format6/lin.in")).unwrap();
    let old_out = io::ciphertexts_from_bytes(include_bytes!("../tests/fixtures/format6/lin.out")).unwrap();
    assert!(program.partitions.iter().all(|p| !p.ks32()));
    assert_eq!(ck.partitions(), &program.partitions[..]);
    let iface = program.interface();
    let want = vec![vec![ClearTensor::new(vec![1, 2], vec![4, 10]).unwrap()]];
    assert_eq!(ck.decrypt(&iface, &old_out).unwrap(), want);
    let silent = Progress::silent();
    let sk = ek.expand(&silent).unwrap();
    let out = crate::exec::run(&program, &sk, old_in, &silent, None).unwrap();
    assert_eq!(ck.decrypt(&iface, &out).unwrap(), want);
    let fresh = ck
        .encrypt(&iface, &[vec![ClearTensor::new(vec![1, 4], vec![1, 2, 3, 4]).unwrap()]])
        .unwrap();
    let out = crate::exec::run(&program, &sk, fresh, &silent, None).unwrap();
    assert_eq!(ck.decrypt(&iface, &out).unwrap(), want);
}

/// Found by the `program_file` fuzz target on file format 7: a parameter set whose LWE noise bound is
/// 2^(2^32 − 2) overflowed the bound check `bound + 2 ≤ modulus bits` (a panic with overflow checks; a
/// wrapped check that passed without them); now refused like any other malformed set.
#[test]
fn fuzz_regression_program_with_a_huge_noise_bound() {
    let bytes = include_bytes!("../tests/fixtures/fuzz-program-noise-bound-overflow.bin");
    assert!(io::program_from_bytes(bytes).is_err());
    for m in [32, 64] {
        let r = RawParamSet {
            lwe_noise_bound_log2: u32::MAX - 1,
            ks_modulus_log2: m,
            bsk_rounding_log2: 0,
            ..raw()
        };
        let e = ParamSet::new(r).unwrap_err().to_string();
        assert!(e.contains("noise bound above"), "{e}");
    }
}

/// Found by the `evaluation_keys` fuzz target on file format 5: a crafted format-4 evaluation-key file
/// whose (not yet checked) parameters overflowed `k·N` in the upgrade to format 5 (a panic with
/// overflow checks on, as the fuzz build has).
#[test]
fn fuzz_regression_evaluation_keys_of_format_4() {
    // (the overflow panics only with overflow checks: `scripts/fuzz.sh` replays this file in the
    // fuzz build, which has them, on every smoke run)
    let bytes = include_bytes!("../tests/fixtures/fuzz-evaluation-keys-v4.bin");
    let e = io::evaluation_keys_from_bytes(bytes).err().expect("refused");
    assert!(e.to_string().contains("insecure parameters"), "{e}");
}

/// Packed encryption with ChaCha20 masks (file format 6): each sent body decrypts to its value after
/// the server's mask regeneration and extraction, in both ways the client computes bodies (direct
/// dot products for a few values, tfhe-rs's Karatsuba product for full ciphertexts); several GLWE
/// ciphertexts, the last partial.
#[test]
fn packed_bodies_decrypt_after_extraction() {
    use crate::client::encrypt_packed;
    use crate::values::{unpack_glwes_into, XofGlweList};
    use tfhe::core_crypto::prelude::*;
    let mut seeder = new_seeder();
    let seeder = seeder.as_mut();
    let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
    for (k, big_n, n) in [(2, 512, 1100), (3, 64, 70), (1, 2048, 5), (2, 512, 512)] {
        let glwe =
            allocate_and_generate_new_binary_glwe_secret_key(GlweDimension(k), PolynomialSize(big_n), &mut secret);
        let values: Vec<u64> = (0..n as u64).map(|v| (v * 37 % 61) << 50).collect();
        let mut bodies = values.clone();
        let mut public = [0u8; 32];
        public[..16].copy_from_slice(&seeder.seed().0.to_le_bytes());
        let key = GlweSecretKey::from_container(glwe.as_ref(), PolynomialSize(big_n));
        encrypt_packed(
            &key,
            public,
            seeder.seed(),
            DynamicDistribution::new_t_uniform(20),
            &mut bodies,
        );
        let list = XofGlweList {
            seed: public,
            glwe_dimension: k as u64,
            polynomial_size: big_n as u64,
            bodies,
        };
        let l = k * big_n + 1;
        let mut out = vec![0u64; n * l];
        unpack_glwes_into(&list.expand(), n, &mut out, None);
        let lwe_key = glwe.clone().into_lwe_secret_key();
        for (j, ct) in out.chunks_exact(l).enumerate() {
            let d = decrypt_lwe_ciphertext(
                &lwe_key,
                &LweCiphertext::from_container(ct, CiphertextModulus::new_native()),
            )
            .0;
            let m = d.wrapping_add(1 << 49) >> 50 << 50;
            assert_eq!(m, values[j], "k={k} N={big_n}: element {j}");
        }
    }
}

/// Ciphertext files of format 5 (packed GLWE ciphertexts with tfhe-rs's seeded masks) still run:
/// the same sample encrypted the old way gives the same results.
#[test]
fn format_5_packed_ciphertexts_still_run() {
    use crate::keys::glwe_noise;
    use crate::values::{CtData, Direction};
    use crate::{exec, ClientKeys, Progress};
    use tfhe::core_crypto::prelude::*;
    let p = clear_program();
    let silent = Progress::silent();
    let keys = ClientKeys::generate(&p.partitions).unwrap();
    let server = keys
        .evaluation_keys_for(&p.interface(), &silent)
        .expand(&silent)
        .unwrap();
    let sample = vec![
        ClearTensor::new(vec![2], vec![3, 5]).unwrap(),
        ClearTensor::new(vec![2], vec![-2, 1]).unwrap(),
    ];
    let mut enc = keys.encrypt(&p.interface(), std::slice::from_ref(&sample)).unwrap();
    assert!(matches!(enc.tensors[0].data, CtData::PackedXof(_)));
    // re-encrypt the encrypted port as format 5 did
    let params = p.partitions[0];
    let big_n = params.polynomial_size();
    let mut seeder = new_seeder();
    let seeder = seeder.as_mut();
    let seed = seeder.seed();
    let mut generator = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seed, seeder);
    let mut list = SeededGlweCiphertextList::new(
        0u64,
        GlweSize(params.glwe_dimension() + 1),
        PolynomialSize(big_n),
        GlweCiphertextCount(1),
        seed.into(),
        crate::keys::modulus(),
    );
    let mut pt = vec![0u64; big_n];
    pt[..2].copy_from_slice(&[encode(3, 60), encode(5, 60)]);
    encrypt_seeded_glwe_ciphertext_list_with_pre_seeded_generator(
        &keys.glwe(0),
        &mut list,
        &PlaintextList::from_container(pt),
        glwe_noise(&params),
        &mut generator,
    );
    enc.tensors[0].data = CtData::Packed(vec![list]);
    let bytes = io::ciphertexts_to_bytes(&enc).unwrap();
    let mut old = bytes.clone();
    old[5..7].copy_from_slice(&5u16.to_le_bytes());
    let enc = io::ciphertexts_from_bytes(&old).unwrap();
    enc.check(&p.interface(), Direction::Inputs).unwrap();
    let out = exec::run(&p, &server, enc, &silent, None).unwrap();
    assert_eq!(
        keys.decrypt(&p.interface(), &out).unwrap(),
        p.simulate(&[sample]).unwrap()
    );
}

/// A lookup with lanes (many-LUT): three 2-bit tables side by side in one 4-bit accumulator (the
/// fourth quarter unused), read by one blind rotation on an input whose top two message bits are
/// zero. Encrypted on every input = simulated = each table on its own; the lanes' outputs feed a
/// linear instruction of the same depth; bad lanes are refused; a format-7 file still reads.
#[test]
fn lanes_of_one_blind_rotation_run_exactly() {
    use crate::{exec, ClearTensor, ClientKeys, Progress};
    let mut p = program();
    p.inputs[0].width = 2;
    p.inputs[0].shape = vec![1];
    p.inputs[0].scale = 57;
    p.num_input_slots = 1;
    let tables: [fn(i64) -> i64; 3] = [|m| 3 - m, |m| m * m, |m| (m + 1) % 4];
    let mut values = vec![0u64; 16];
    for (j, t) in tables.iter().enumerate() {
        for m in 0..4 {
            values[4 * j + m as usize] = encode(t(m), 58);
        }
    }
    p.tables = vec![Table { precision: 4, values }];
    // x at scale 57 (2 bits): shift 2 puts it at scale 59, a 4-bit message whose top two bits are
    // zero
    p.instrs = vec![
        Instr::Pbs {
            input: 0,
            shift: 2,
            offset: 0,
            table: 0,
            partition: 0,
        },
        Instr::Lane { pbs: 1, boxes: 4 },
        Instr::Lane { pbs: 1, boxes: 8 },
        Instr::Linear {
            terms: vec![(1, 1), (2, 1), (3, 1)],
            constant: 0,
        },
    ];
    p.instr_origin = vec![0; 4];
    p.outputs[0].shape = vec![4];
    p.outputs[0].width = 5;
    p.outputs[0].scale = 58;
    p.outputs[0].slots = vec![1, 2, 3, 4];
    p.validate().unwrap();
    assert_eq!(p.pbs_count(), 1, "lanes are not lookups");
    assert_eq!(p.depths(), vec![0, 1, 1, 1, 1]);
    let want = |m: i64| {
        let o: Vec<i64> = tables.iter().map(|t| t(m)).collect();
        vec![o[0], o[1], o[2], o.iter().sum()]
    };
    let samples: Vec<Vec<ClearTensor>> = (0..4)
        .map(|m| vec![ClearTensor::new(vec![1], vec![m]).unwrap()])
        .collect();
    let sim = p.simulate(&samples).unwrap();
    for (m, s) in sim.iter().enumerate() {
        assert_eq!(s[0].values, want(m as i64), "simulated, x = {m}");
    }
    let silent = Progress::silent();
    let ck = ClientKeys::generate(&p.partitions).unwrap();
    let sk = ck.evaluation_keys_for(&p.interface(), &silent).expand(&silent).unwrap();
    let out = exec::run(&p, &sk, ck.encrypt(&p.interface(), &samples).unwrap(), &silent, None).unwrap();
    assert_eq!(ck.decrypt(&p.interface(), &out).unwrap(), sim, "encrypted = simulated");

    // the negacyclic wrap past the last box is simulated as the rotation gives it
    let mut q = p.clone();
    q.instrs[2] = Instr::Lane { pbs: 1, boxes: 15 };
    let s = q.simulate_slots(&[encode(2, 57)], &[]);
    assert_eq!(s[3], q.tables[0].values[1].wrapping_neg());

    for (bad, why) in [
        (Instr::Lane { pbs: 1, boxes: 0 }, "no box"),
        (Instr::Lane { pbs: 1, boxes: 16 }, "past the table"),
        (Instr::Lane { pbs: 0, boxes: 4 }, "an input slot"),
        (Instr::Lane { pbs: 2, boxes: 4 }, "a lane"),
        (Instr::Lane { pbs: 3, boxes: 4 }, "itself"),
        (Instr::Lane { pbs: 99, boxes: 4 }, "a later slot"),
    ] {
        let mut q = p.clone();
        q.instrs[2] = bad;
        assert!(q.validate().is_err(), "{why}");
    }
    // the lane changes what ciphertexts mean: another fingerprint
    let mut q = p.clone();
    q.instrs[2] = Instr::Lane { pbs: 1, boxes: 12 };
    assert_ne!(q.fingerprint(), p.fingerprint());

    // formats 7 (before lanes) and 8 (before rounded keys): the parameter sets' old layout, read;
    // a current file relabelled 8 is refused, never misread
    let mut old = io::to_bytes(io::FileKind::Program, &crate::program::legacy::v8_of(&program())).unwrap();
    for v in [7u16, 8] {
        old[5..7].copy_from_slice(&v.to_le_bytes());
        assert_eq!(io::program_from_bytes(&old).unwrap(), program());
    }
    let mut relabelled = io::program_to_bytes(&program()).unwrap();
    relabelled[5..7].copy_from_slice(&8u16.to_le_bytes());
    assert!(io::program_from_bytes(&relabelled).is_err());
    let mut old = io::to_bytes(io::FileKind::Program, &crate::program::legacy::v8_of(&p)).unwrap();
    old[5..7].copy_from_slice(&8u16.to_le_bytes());
    assert_eq!(io::program_from_bytes(&old).unwrap(), p);
    let bytes = io::program_to_bytes(&p).unwrap();
    assert_eq!(io::program_from_bytes(&bytes).unwrap(), p);
}
