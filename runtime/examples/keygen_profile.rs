use std::time::Instant;
use fhec_runtime::{ClientKeys, ParamSet, Progress};

fn set(n: usize, k: usize, big_n: usize, bl: usize, lv: usize, kb: usize, kl: usize) -> ParamSet {
    ParamSet::with_secure_noise(n, k, big_n, bl, lv, kb, kl).unwrap().with_ks_modulus(32).unwrap()
}

fn main() {
    let p0 = set(920, 1, 2048, 23, 1, 4, 4);
    let p1 = set(680, 4, 512, 23, 1, 2, 6);
    let p2 = set(680, 4, 512, 23, 1, 3, 4);
    let none = Progress::silent();
    for parts in [vec![p0], vec![p1], vec![p0, p1], vec![p0, p1, p2]] {
        let t = Instant::now();
        let ck = ClientKeys::generate(&parts).unwrap();
        let t_secret = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let ek = ck.evaluation_keys(&none);
        let t_eval = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _sk = ek.expand(&none).unwrap();
        let t_expand = t.elapsed().as_secs_f64();
        println!("{} partitions: secret {t_secret:.3} s, evaluation keys {t_eval:.3} s, expand {t_expand:.3} s", parts.len());
    }
}
