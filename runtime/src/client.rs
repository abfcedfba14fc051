//! Client side: encryption and decryption of a program's inputs and outputs, and simulation.

use rayon::prelude::*;
use tfhe::core_crypto::prelude::*;

use crate::interface::ProgramInterface;
use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_add_multisum_assign;
use tfhe::core_crypto::commons::math::random::{RandomGenerator, Seed};

use crate::keys::{glwe_noise, ClientKeys};
use crate::program::{decode, Port, Program};
use crate::values::{
    check_output, encode_input, xof_mask, Ciphertexts, ClearTensor, CtData, CtTensor, Direction, XofGlweList,
};
use crate::RuntimeError;

fn check_program_params(keys: &ClientKeys, program: &ProgramInterface) -> Result<(), RuntimeError> {
    if keys.partitions != program.partitions {
        return Err(RuntimeError::Mismatch(format!(
            "the keys are for other parameters ({}) than the program ({})",
            crate::keys::summary(&keys.partitions),
            crate::keys::summary(&program.partitions)
        )));
    }
    Ok(())
}

/// Checks the number of inputs of each sample and encodes them, sample-major per port.
fn encode_batch(ports: &[Port], samples: &[Vec<ClearTensor>]) -> Result<Vec<Vec<u64>>, RuntimeError> {
    if samples.is_empty() {
        return Err(RuntimeError::Shape("no samples to encrypt".into()));
    }
    let mut per_port: Vec<Vec<u64>> = vec![Vec::new(); ports.len()];
    for (s, inputs) in samples.iter().enumerate() {
        if inputs.len() != ports.len() {
            return Err(RuntimeError::Shape(format!(
                "sample {s} has {} inputs, the program takes {} ({})",
                inputs.len(),
                ports.len(),
                ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for (k, (port, t)) in ports.iter().zip(inputs).enumerate() {
            per_port[k].extend(encode_input(port, t, s)?);
        }
    }
    Ok(per_port)
}

/// Encrypts packed plaintexts in place: `bodies` holds the plaintext coefficients of the first
/// `bodies.len()` coefficients of GLWE ciphertexts (N per ciphertext, the padding not included);
/// each becomes its body `m + e + (Σᵢ maskᵢ·sᵢ)[t]` with the mask of `public` ([`xof_mask`]) and
/// the noise drawn from tfhe-rs's generator seeded with `secret`. Only the bodies that carry values
/// are computed and sent: each is an LWE sample in its own right (the extracted ciphertext's).
pub(crate) fn encrypt_packed(
    glwe: &GlweSecretKey<&[u64]>,
    public: [u8; 32],
    secret: Seed,
    noise: DynamicDistribution<u64>,
    bodies: &mut [u64],
) {
    let big_n = glwe.polynomial_size().0;
    let kn = glwe.as_ref().len();
    let count = bodies.len().div_ceil(big_n);
    let mut mask = vec![0u64; count * kn];
    xof_mask(public, &mut mask);
    let mut e = vec![0u64; bodies.len()];
    RandomGenerator::<DefaultRandomGenerator>::new(secret).fill_slice_with_random_from_distribution(&mut e, noise);
    for (b, e) in bodies.iter_mut().zip(&e) {
        *b = b.wrapping_add(*e);
    }
    // the key's polynomials reversed: coefficient t of a·s is then two forward dot products
    let rev: Vec<u64> = glwe
        .as_ref()
        .chunks_exact(big_n)
        .flat_map(|p| p.iter().rev().copied())
        .collect();
    for (g, body) in bodies.chunks_mut(big_n).enumerate() {
        let mask = &mask[g * kn..(g + 1) * kn];
        if body.len() * big_n <= 2 * karatsuba_ops(big_n) {
            // a few coefficients: (a·s)[t] = Σ_{w≤t} a[w]·s[t−w] − Σ_{w>t} a[w]·s[N+t−w]
            for (t, b) in body.iter_mut().enumerate() {
                let mut acc = 0u64;
                for (a, r) in mask.chunks_exact(big_n).zip(rev.chunks_exact(big_n)) {
                    acc = acc.wrapping_add(dot(&a[..=t], &r[big_n - 1 - t..]));
                    acc = acc.wrapping_sub(dot(&a[t + 1..], &r[..big_n - 1 - t]));
                }
                *b = b.wrapping_add(acc);
            }
        } else {
            let mut full = vec![0u64; big_n];
            full[..body.len()].copy_from_slice(body);
            polynomial_wrapping_add_multisum_assign(
                &mut Polynomial::from_container(&mut full[..]),
                &PolynomialList::from_container(mask, PolynomialSize(big_n)),
                &glwe.as_polynomial_list(),
            );
            let used = body.len();
            body.copy_from_slice(&full[..used]);
        }
    }
}

fn dot(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .fold(0u64, |acc, (x, y)| acc.wrapping_add(x.wrapping_mul(*y)))
}

/// Multiplications of a Karatsuba product of two polynomials of size `n` (tfhe-rs recurses down
/// to 64 coefficients, then multiplies directly).
fn karatsuba_ops(n: usize) -> usize {
    let mut ops = n.min(64) * n.min(64);
    let mut m = n;
    while m > 64 {
        ops *= 3;
        m /= 2;
    }
    ops
}

impl ClientKeys {
    /// Encrypts the inputs of a batch of samples (each sample: one tensor per program input).
    /// Each sample's tensor is packed into GLWE ciphertexts with seeded masks
    /// ([`CtData::PackedXof`]): the server regenerates the masks and extracts one LWE ciphertext per
    /// element.
    /// `program` is the program's client view ([`Program::interface`]).
    pub fn encrypt(
        &self,
        program: &ProgramInterface,
        samples: &[Vec<ClearTensor>],
    ) -> Result<Ciphertexts, RuntimeError> {
        check_program_params(self, program)?;
        let encoded = encode_batch(&program.inputs, samples)?;
        // inputs are encrypted under partition 0's GLWE key
        let p = &self.partitions[0];
        let glwe = self.glwe(0);
        let big_n = p.polynomial_size();
        let mut seeder = new_seeder();
        let seeder = seeder.as_mut();
        let mut tensors = Vec::with_capacity(encoded.len());
        for (port, values) in program.inputs.iter().zip(encoded) {
            if port.clear {
                // a clear port's values are encoded at scale 0: the values themselves
                tensors.push(CtTensor {
                    port: port.name.clone(),
                    shape: port.shape.clone(),
                    data: CtData::Clear(values.into_iter().map(|v| v as i64).collect()),
                });
                continue;
            }
            let n = port.len();
            // seeds drawn in order here (the mask's public seed, the noise's secret one),
            // encryption in parallel below when there are several samples
            let jobs: Vec<([u8; 32], Seed)> = (0..samples.len())
                .map(|_| {
                    let mut public = [0u8; 32];
                    public[..16].copy_from_slice(&seeder.seed().0.to_le_bytes());
                    public[16..].copy_from_slice(&seeder.seed().0.to_le_bytes());
                    (public, seeder.seed())
                })
                .collect();
            let encrypt_one = |(s, (public, secret)): (usize, ([u8; 32], Seed))| {
                let mut bodies = values[s * n..(s + 1) * n].to_vec();
                encrypt_packed(&glwe, public, secret, glwe_noise(p), &mut bodies);
                XofGlweList {
                    seed: public,
                    glwe_dimension: p.glwe_dimension() as u64,
                    polynomial_size: big_n as u64,
                    bodies,
                }
            };
            let lists: Vec<XofGlweList> = if jobs.len() == 1 {
                jobs.into_iter().enumerate().map(encrypt_one).collect()
            } else {
                jobs.into_par_iter().enumerate().map(encrypt_one).collect()
            };
            tensors.push(CtTensor {
                port: port.name.clone(),
                shape: port.shape.clone(),
                data: CtData::PackedXof(lists),
            });
        }
        Ok(Ciphertexts {
            program: program.fingerprint,
            key_id: self.key_id,
            direction: Direction::Inputs,
            samples: samples.len(),
            lwe_size: p.big_lwe_dimension() + 1,
            tensors,
        })
    }

    /// Decrypts a program's encrypted outputs: per sample, one tensor per program output.
    pub fn decrypt(
        &self,
        program: &ProgramInterface,
        outputs: &Ciphertexts,
    ) -> Result<Vec<Vec<ClearTensor>>, RuntimeError> {
        check_program_params(self, program)?;
        outputs.check(program, Direction::Outputs)?;
        if outputs.key_id != self.key_id {
            return Err(RuntimeError::KeyMismatch(format!(
                "these results were computed under other keys (key id {:016x}) than the secret keys given (key id {:016x}): \
                 decrypt them with the client that encrypted the inputs",
                outputs.key_id, self.key_id
            )));
        }
        let key = self.big_key(program.output_dim as usize);
        let mut result: Vec<Vec<ClearTensor>> = vec![Vec::new(); outputs.samples];
        for (port, t) in program.outputs.iter().zip(&outputs.tensors) {
            let CtData::Full(list) = &t.data else {
                return Err(RuntimeError::Mismatch("output ciphertexts must not be seeded".into()));
            };
            let n = port.len();
            let values: Vec<i64> = list
                .iter()
                .map(|ct| decode(decrypt_lwe_ciphertext(&key, &ct).0, port.scale))
                .collect();
            for (s, r) in result.iter_mut().enumerate() {
                let values = values[s * n..(s + 1) * n].to_vec();
                check_output(port, &values, s)?;
                r.push(ClearTensor {
                    shape: port.shape.clone(),
                    values,
                });
            }
        }
        Ok(result)
    }
}

impl Program {
    /// Runs the program without keys on exact values: the result an encrypted run gives when no
    /// lookup fails. Same input checks as encryption.
    pub fn simulate(&self, samples: &[Vec<ClearTensor>]) -> Result<Vec<Vec<ClearTensor>>, RuntimeError> {
        self.validate()?;
        let per_port = encode_batch(&self.inputs, samples)?;
        let mut out = Vec::with_capacity(samples.len());
        for s in 0..samples.len() {
            let mut inputs = Vec::with_capacity(self.num_input_slots as usize);
            let mut clear = Vec::with_capacity(self.num_clear_values());
            for (port, values) in self.inputs.iter().zip(&per_port) {
                let n = port.len();
                let v = &values[s * n..(s + 1) * n];
                if port.clear {
                    clear.extend(v.iter().map(|&x| x as i64));
                } else {
                    inputs.extend_from_slice(v);
                }
            }
            let slots = self.simulate_slots(&inputs, &clear);
            let mut tensors = Vec::with_capacity(self.outputs.len());
            for p in &self.outputs {
                let values: Vec<i64> = p.slots.iter().map(|&i| decode(slots[i as usize], p.scale)).collect();
                check_output(p, &values, s)?;
                tensors.push(ClearTensor {
                    shape: p.shape.clone(),
                    values,
                });
            }
            out.push(tensors);
        }
        Ok(out)
    }
}
