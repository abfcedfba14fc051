//! Client side: encryption and decryption of a program's inputs and outputs, and simulation.

use rayon::prelude::*;
use tfhe::core_crypto::prelude::*;

use crate::interface::ProgramInterface;
use crate::keys::{glwe_noise, modulus, ClientKeys};
use crate::program::{decode, Port, Program};
use crate::values::{check_output, encode_input, Ciphertexts, ClearTensor, CtData, CtTensor, Direction};
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

impl ClientKeys {
    /// Encrypts the inputs of a batch of samples (each sample: one tensor per program input).
    /// Each sample's tensor is packed into seeded GLWE ciphertexts ([`CtData::Packed`]): the server
    /// regenerates their masks and extracts one LWE ciphertext per element.
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
        let glwe_size = GlweSize(p.glwe_dimension() + 1);
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
            let per = n.div_ceil(big_n);
            // seeds drawn in order here, encryption in parallel below
            let jobs: Vec<(_, EncryptionRandomGenerator<DefaultRandomGenerator>)> = (0..samples.len())
                .map(|_| {
                    let seed = seeder.seed();
                    (seed, EncryptionRandomGenerator::new(seed, seeder))
                })
                .collect();
            let lists: Vec<SeededGlweCiphertextListOwned<u64>> = jobs
                .into_par_iter()
                .enumerate()
                .map(|(s, (seed, mut generator))| {
                    let mut list = SeededGlweCiphertextList::new(
                        0u64,
                        glwe_size,
                        PolynomialSize(big_n),
                        GlweCiphertextCount(per),
                        seed.into(),
                        modulus(),
                    );
                    if per > 0 {
                        let mut pt = vec![0u64; per * big_n];
                        pt[..n].copy_from_slice(&values[s * n..(s + 1) * n]);
                        encrypt_seeded_glwe_ciphertext_list_with_pre_seeded_generator(
                            &glwe,
                            &mut list,
                            &PlaintextList::from_container(pt),
                            glwe_noise(p),
                            &mut generator,
                        );
                    }
                    list
                })
                .collect();
            tensors.push(CtTensor {
                port: port.name.clone(),
                shape: port.shape.clone(),
                data: CtData::Packed(lists),
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
