//! The client/server split of the facade: a server built from bytes alone (a program file and
//! evaluation keys) runs what a client encrypted; keys of another keygen are refused by kind.

use fhec::runtime::{ClearTensor, Progress};
use fhec::trace::Tracer;
use fhec::{compile_traced, Client, CompileOptions, ErrorKind, Server};
use ndarray::{arr2, ArrayD};

fn circuit() -> fhec::Circuit {
    let t = Tracer::new();
    let x = t.input("x", &[1, 3]);
    let w = arr2(&[[2i64, -1], [1, 3], [0, 2]]).into_dyn();
    let y = (x.matmul(&w) + 4).relu().round_bits(1);
    let inputset: Vec<Vec<ArrayD<i64>>> = (0..8).map(|i| vec![arr2(&[[i, 7 - i, i % 3]]).into_dyn()]).collect();
    compile_traced(&[y], &inputset, &CompileOptions::default()).unwrap()
}

#[test]
fn a_server_from_bytes_runs_what_a_client_encrypted() {
    let c = circuit();
    let silent = Progress::silent();
    let program = c.program_bytes().unwrap();
    let client = Client::keygen(c.interface()).unwrap();
    let eval_keys = client.evaluation_keys_bytes(&silent).unwrap();
    // the server sees bytes only: a program file and evaluation keys
    let server = Server::from_bytes(&program, &eval_keys, &silent).unwrap();
    assert_eq!(server.key_id(), client.key_id());
    let samples: Vec<Vec<ClearTensor>> = (0..3)
        .map(|i| vec![ClearTensor::new(vec![1, 3], vec![i, 7 - i, 1]).unwrap()])
        .collect();
    let out = server
        .run_bytes(&client.encrypt_bytes(&samples).unwrap(), &silent, None)
        .unwrap();
    let got = client.decrypt_bytes(&out).unwrap();
    assert_eq!(got, c.program().simulate(&samples).unwrap());
    for (s, g) in samples.iter().zip(&got) {
        let x = fhec::from_clear(&s[0]).unwrap();
        assert_eq!(fhec::from_clear(&g[0]).unwrap(), c.eval_clear(&[x]).unwrap()[0]);
    }

    // another keygen: its ciphertexts do not run on this server, this server's results do not
    // decrypt with its keys — both by kind, with a message that says what to do
    let other = Client::keygen(c.interface()).unwrap();
    assert_ne!(other.key_id(), client.key_id());
    let e = server
        .run_bytes(&other.encrypt_bytes(&samples).unwrap(), &silent, None)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Mismatch, "{e}");
    assert!(e.to_string().contains("other keys"), "{e}");
    let e = other.decrypt_bytes(&out).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Mismatch, "{e}");

    // a client restored from its key bytes decrypts as before
    let restored = Client::from_bytes(&program, &client.secret_keys_bytes().unwrap()).unwrap();
    assert_eq!(restored.key_id(), client.key_id());
    assert_eq!(restored.decrypt_bytes(&out).unwrap(), got);

    // damaged or swapped files are format errors, not panics
    let e = Server::from_bytes(&eval_keys, &program, &silent).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Format, "{e}");
    let e = Server::from_bytes(&program, &eval_keys[..eval_keys.len() / 2], &silent)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Format, "{e}");
}

/// Evaluation keys of a program with other parameters are refused before any work.
#[test]
fn evaluation_keys_for_other_parameters_are_refused() {
    let c = circuit();
    let t = Tracer::new();
    let x = t.input("x", &[2]);
    let y = x.relu();
    let inputset = vec![vec![ndarray::arr1(&[0i64, 1]).into_dyn()]];
    let narrow = compile_traced(&[y], &inputset, &CompileOptions::default()).unwrap();
    assert_ne!(narrow.program().partitions, c.program().partitions);
    let silent = Progress::silent();
    let client = Client::keygen(narrow.interface()).unwrap();
    let e = Server::new(c.shared_program(), client.evaluation_keys(&silent), &silent)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Mismatch, "{e}");
}
