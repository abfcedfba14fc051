//! Helpers for the tests of model readers, here and in other crates (`fhec-onnx` reads ONNX tree
//! ensembles into this crate's schema): a deterministic generator, the check that a hostile file is
//! refused, and the damaged-file loop. Compiled for tests and with the `testing` feature only.

use crate::{Ensemble, TreeError};

/// The error of an import that must fail, checked to contain `want`.
#[track_caller]
pub fn refused<T>(r: Result<T, TreeError>, want: &str) -> String {
    let Err(e) = r else {
        panic!("a hostile file was accepted (want an error mentioning `{want}`)")
    };
    let e = e.to_string();
    assert!(e.contains(want), "the error `{e}` does not mention `{want}`");
    e
}

/// A deterministic xorshift generator.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Runs `import` on `cases` damaged copies of each seed: every outcome is an error or a valid
/// ensemble that evaluates, never a panic.
pub fn never_panics(
    what: &str,
    seeds: &[Vec<u8>],
    cases: usize,
    damage: fn(&[u8], &mut XorShift) -> Vec<u8>,
    import: &dyn Fn(&[u8]) -> Result<Ensemble, TreeError>,
) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut errors) = (0, 0);
    for k in 0..cases {
        let seed = &seeds[k % seeds.len()];
        let bytes = damage(seed, &mut rng);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = import(&bytes);
            if let Ok(e) = &r {
                e.validate().unwrap();
                if e.n_features <= 64 {
                    assert_eq!(e.predict_raw(&vec![0.5; e.n_features]).len(), e.n_outputs);
                }
            }
            r.is_ok()
        }));
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => errors += 1,
            Err(_) => panic!(
                "{what}: case {k} panicked on {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(4000)])
            ),
        }
    }
    // the damage reaches past the parser: some files stay valid, most are refused
    assert!(
        errors > cases / 4,
        "{what}: only {errors} of {cases} damaged files refused"
    );
    eprintln!("{what}: {cases} damaged files, {ok} still valid, {errors} refused, no panic");
}
