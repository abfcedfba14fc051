//! Validates the noise model: ~10^4 bootstraps at a deliberately high failure probability, the
//! observed error rate compared with the prediction of `fhec_backend_tfhe::params` (tfhe-rs noise
//! formulas, secure parameters). A wrong variance formula, a missing noise term or the wrong
//! modulus switch shows up here as a rate off by a large factor.

use fhec_backend_tfhe::params::{self, Constraint, NoiseDag, PError, Variances};
use fhec_runtime::program::{encode, Instr, Origin, Port, Program, Table};
use fhec_runtime::{exec, ClearTensor, ClientKeys, Progress};
use fhec_tests::Rng;

const SAMPLES: usize = 5000;
const PRECISION: u32 = 2;

#[test]
fn observed_error_rate_matches_prediction() {
    // secure parameters for 2-bit lookups at the default 2^-40
    let lookup = |w: f64| Constraint {
        precision: PRECISION,
        fresh_weight: 1.0,
        pbs_weight: w,
        lookup: true,
        count: 1,
        origin: "statistical test".into(),
    };
    let params = params::search(
        &NoiseDag {
            constraints: vec![lookup(1.0)],
        },
        PError::default(),
    )
    .unwrap()
    .params;
    assert!(params.is_secure());
    // amplify a bootstrap's output noise by c so that the second lookup fails with p ≈ 2^-6
    let v = Variances::of(&params);
    let target = -6.0;
    let (mut lo, mut hi) = (1.0f64, 1e12f64);
    for _ in 0..200 {
        let mid = (lo * hi).sqrt();
        let p = params::log2_p_fail(PRECISION, v.at(&lookup(mid)));
        if p < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let c = lo.sqrt().round().max(1.0) as i64;
    let predicted = params::log2_p_fail(PRECISION, v.at(&lookup((c * c) as f64))).exp2();
    assert!(
        (2f64.powi(-8)..2f64.powi(-4)).contains(&predicted),
        "predicted {predicted}"
    );

    // x → z = PBS(x, constant k) → y = x + c·(z − k) → PBS(y, identity). (A table of zeros
    // would give a noiseless z: the blind rotation of an all-zero accumulator stays zero.)
    let scale = 63 - PRECISION;
    let k = encode(1, scale);
    let program = Program {
        name: "noise".into(),
        params,
        inputs: vec![Port {
            name: "x".into(),
            shape: vec![1],
            width: PRECISION,
            signed: false,
            scale,
            slots: vec![0],
            clear: false,
            range: None,
        }],
        outputs: vec![
            Port {
                name: "y".into(),
                shape: vec![1],
                width: PRECISION,
                signed: false,
                scale,
                slots: vec![3],
                clear: false,
                range: None,
            },
            // the raw torus value of z: k plus the bootstrap's noise, to measure its variance
            Port {
                name: "z".into(),
                shape: vec![1],
                width: 64,
                signed: true,
                scale: 0,
                slots: vec![1],
                clear: false,
                range: None,
            },
        ],
        num_input_slots: 1,
        instrs: vec![
            Instr::Pbs {
                input: 0,
                shift: 0,
                offset: 0,
                table: 0,
            },
            Instr::Linear {
                terms: vec![(0, 1), (1, c)],
                constant: k.wrapping_mul(c as u64).wrapping_neg(),
            },
            Instr::Pbs {
                input: 2,
                shift: 0,
                offset: 0,
                table: 1,
            },
        ],
        tables: vec![
            Table {
                precision: PRECISION,
                values: vec![k; 1 << PRECISION],
            },
            Table {
                precision: PRECISION,
                values: (0..1 << PRECISION).map(|m| encode(m, scale)).collect(),
            },
        ],
        instr_origin: vec![0, 0, 0],
        origins: vec![Origin {
            op: "test".into(),
            location: None,
        }],
        noise: Default::default(),
    };
    program.validate().unwrap();
    let ck = ClientKeys::generate(&params).unwrap();
    let sk = ck
        .evaluation_keys(&Progress::silent())
        .expand(&Progress::silent())
        .unwrap();
    let mut rng = Rng::new(42);
    let xs: Vec<i64> = (0..SAMPLES).map(|_| rng.range(0, (1 << PRECISION) - 1)).collect();
    let batch: Vec<Vec<ClearTensor>> = xs
        .iter()
        .map(|&x| vec![ClearTensor::new(vec![1], vec![x]).unwrap()])
        .collect();
    let out = exec::run(
        &program,
        &sk,
        ck.encrypt(&program, &batch).unwrap(),
        &Progress::silent(),
        None,
    )
    .unwrap();
    let dec = ck.decrypt(&program, &out).unwrap();
    let measured_pbs = dec
        .iter()
        .map(|d| (d[1].values[0].wrapping_sub(k as i64) as f64).powi(2))
        .sum::<f64>()
        / SAMPLES as f64
        / 2f64.powi(128);
    eprintln!(
        "variances: fresh {:.3e} pbs {:.3e} (measured {measured_pbs:.3e}) ks {:.3e} ms {:.3e}",
        v.fresh, v.pbs, v.keyswitch, v.modulus_switch
    );
    let failures = xs.iter().zip(&dec).filter(|(x, d)| d[0].values[0] != **x).count();
    let expected = predicted * SAMPLES as f64;
    let sigma = (expected * (1.0 - predicted)).sqrt();
    eprintln!(
        "{params}: c = {c}, predicted p_fail = 2^{:.2} ({expected:.1} of {SAMPLES}), observed {failures}",
        predicted.log2()
    );
    // binomial spread plus a factor for the Gaussian approximation of the formulas
    let (lo, hi) = (
        (expected / 2.0).min(expected - 5.0 * sigma),
        (expected * 2.0).max(expected + 5.0 * sigma),
    );
    assert!(
        (lo..=hi).contains(&(failures as f64)),
        "observed {failures} failures, predicted {expected:.1} (accepted {lo:.1}..={hi:.1})"
    );
}
