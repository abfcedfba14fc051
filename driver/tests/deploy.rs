//! Deployment files (`fhec::model`): a model's server file and client file, written and read back,
//! run end to end with real keys; the committed fixtures of every payload version still read and run;
//! the client file holds no instruction or table; damaged and hostile files are errors.
//!
//! `FHEC_BLESS=1 cargo test --release -p fhec --test deploy` rewrites the fixtures of the current
//! version (never those of earlier versions: they are what older fhec wrote).

use std::path::PathBuf;
use std::sync::Arc;

use fhec::quant::{Post, QuantizedLinear};
use fhec::runtime::io::{self as rio, FileKind, MODEL_FORMAT_VERSION};
use fhec::runtime::{ClearTensor, Progress};
use fhec::{ClientModel, CompileOptions, ErrorKind, ServerModel};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/deploy/v{MODEL_FORMAT_VERSION}"))
}

fn mlp() -> fhec::Circuit {
    let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/mlp.fhe")).unwrap();
    let m = fhec::ir::parse_module(&src).unwrap();
    let spec = fhec::integer_spec(&m).unwrap();
    fhec::compile(m, spec, &CompileOptions::default()).unwrap()
}

/// A logistic regression of 3 features and 2 classes (8-bit inputs, 5-bit weights).
fn linear() -> fhec::Circuit {
    let w = [1.0, -2.0, 0.5, 3.0, -0.25, 1.5];
    let calib = [0.0, -1.0, 2.0, 1.0, 1.0, 0.0, 0.5, 0.5, -1.0, 2.0, 0.0, 1.0];
    let q = QuantizedLinear::build(&w, 3, 2, &[0.25, -1.0], &calib, 8, 5).unwrap();
    let spec = q
        .client_spec(Post::Softmax)
        .with_classes(vec![serde_json::json!("no"), serde_json::json!("yes")]);
    fhec::compile(q.module().unwrap(), spec, &CompileOptions::default()).unwrap()
}

fn mlp_inputs() -> Vec<Vec<ClearTensor>> {
    [[15, 3, 9, 1], [0, 0, 0, 15], [7, 12, 0, 4]]
        .iter()
        .map(|x| vec![ClearTensor::new(vec![1, 4], x.to_vec()).unwrap()])
        .collect()
}

/// Encrypts with a client made from the client file alone, runs with a server made from the server
/// file alone, decrypts.
fn round_trip(server: &ServerModel, client: &ClientModel, samples: &[Vec<ClearTensor>]) -> Vec<Vec<ClearTensor>> {
    let progress = Progress::silent();
    let c = fhec::Client::keygen(client.interface.clone()).unwrap();
    let s = fhec::Server::new(
        Arc::new(server.program.clone()),
        c.evaluation_keys(&progress),
        &progress,
    )
    .unwrap();
    let out = s.run(c.encrypt(samples).unwrap(), &progress, None).unwrap();
    c.decrypt(&out).unwrap()
}

#[test]
fn model_files_round_trip_and_run_with_each_side_holding_its_file_only() {
    let circuit = mlp();
    let (server_bytes, client_bytes) = circuit.model_files("mlp", "program").unwrap();
    assert_eq!(rio::file_kind(&server_bytes), Some(FileKind::ServerModel));
    assert_eq!(rio::file_kind(&client_bytes), Some(FileKind::ClientModel));
    let server = ServerModel::from_bytes(&server_bytes).unwrap();
    let client = ClientModel::from_bytes(&client_bytes).unwrap();
    assert_eq!(server.info.name, "mlp");
    assert_eq!(client.info, server.info);
    assert!(client.matches(&server));
    assert_eq!(client.interface, circuit.program().interface());
    assert_eq!(server.program.fingerprint(), circuit.program().fingerprint());
    let samples = mlp_inputs();
    let want = circuit.program().simulate(&samples).unwrap();
    assert_eq!(round_trip(&server, &client, &samples), want);
    // the reference interpreter agrees
    for (s, w) in samples.iter().zip(&want) {
        let x = fhec::from_clear(&s[0]).unwrap();
        assert_eq!(circuit.eval_clear(&[x]).unwrap()[0], fhec::from_clear(&w[0]).unwrap());
    }
}

#[test]
fn the_client_file_holds_no_instruction_and_no_table() {
    let circuit = mlp();
    let (_, client_bytes) = circuit.model_files("mlp", "program").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&client_bytes[7..]).unwrap();
    let interface = json["interface"].as_object().unwrap();
    let keys: Vec<&str> = interface.keys().map(String::as_str).collect();
    for k in ["instrs", "tables", "instr_origin", "origins", "num_input_slots"] {
        assert!(!keys.contains(&k), "{k} in {keys:?}");
    }
    for p in interface["outputs"].as_array().unwrap() {
        assert_eq!(p["slots"], serde_json::json!([]));
    }
    // and no table value: the ReLU's entries 5, 6, 7 at the output scale
    let scale = circuit.program().outputs[0].scale;
    for v in circuit
        .program()
        .tables
        .iter()
        .flat_map(|t| &t.values)
        .filter(|&&v| v != 0)
    {
        let needle = v.to_string();
        assert!(
            !String::from_utf8_lossy(&client_bytes).contains(&needle),
            "table value {v} (scale {scale}) in the client file"
        );
    }
}

#[test]
fn a_model_client_quantises_encrypts_decrypts_and_post_processes_like_the_model() {
    let circuit = linear();
    let (server_bytes, client_bytes) = circuit.model_files("logreg", "LogisticRegression").unwrap();
    let server = ServerModel::from_bytes(&server_bytes).unwrap();
    let client = ClientModel::from_bytes(&client_bytes).unwrap();
    let x = [0.3, -0.7, 1.9, 2.5, 0.0, -1.0, -9.0, 9.0, 0.5];
    let (samples, clipped) = client.encode_rows(&x, 3).unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(clipped, 3, "2.5, -9 and 9 are outside the calibration ranges");
    let out = round_trip(&server, &client, &samples);
    assert_eq!(out, circuit.program().simulate(&samples).unwrap());
    let (probs, cols) = client.decode_rows(&out).unwrap();
    assert_eq!((probs.len(), cols), (6, 2));
    for row in probs.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-12, "{row:?}");
    }
    // the same as dequantising and post-processing by hand
    let ints: Vec<i64> = out.iter().flat_map(|s| s[0].values.clone()).collect();
    let by_hand = client.spec.post_process(&client.spec.dequantize(0, &ints), 2);
    assert_eq!(probs, by_hand);
    let classes = client.class_indices(&out).unwrap();
    for (c, row) in classes.iter().zip(probs.chunks(2)) {
        assert_eq!(*c, usize::from(row[1] > row[0]));
    }
    // rows of the wrong width, and integer models, are refused with a message
    let e = client.encode_rows(&x[..8], 3).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Shape, "{e}");
    let (_, mlp_client) = mlp().model_files("mlp", "program").unwrap();
    let e = ClientModel::from_bytes(&mlp_client)
        .unwrap()
        .encode_rows(&x, 3)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// The files of every payload version this fhec reads: committed fixtures, read with today's code,
/// run with fresh keys, giving the results recorded when they were written.
#[test]
fn committed_fixtures_of_each_version_read_and_run() {
    let dir = fixtures();
    if std::env::var("FHEC_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(&dir).unwrap();
        let circuit = mlp();
        let (s, c) = circuit.model_files("mlp", "program").unwrap();
        std::fs::write(dir.join("mlp.server.fhec"), s).unwrap();
        std::fs::write(dir.join("mlp.client.fhec"), c).unwrap();
        let samples = mlp_inputs();
        let out = circuit.program().simulate(&samples).unwrap();
        let expected = serde_json::json!({
            "inputs": samples.iter().map(|s| s[0].values.clone()).collect::<Vec<_>>(),
            "outputs": out.iter().map(|s| s[0].values.clone()).collect::<Vec<_>>(),
        });
        std::fs::write(dir.join("mlp.expected.json"), expected.to_string()).unwrap();
        let circuit = linear();
        let (s, c) = circuit.model_files("logreg", "LogisticRegression").unwrap();
        std::fs::write(dir.join("logreg.server.fhec"), s).unwrap();
        std::fs::write(dir.join("logreg.client.fhec"), c).unwrap();
    }
    for v in 1..=MODEL_FORMAT_VERSION {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/deploy/v{v}"));
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
        let server = ServerModel::from_bytes(&read("mlp.server.fhec")).unwrap();
        let client = ClientModel::from_bytes(&read("mlp.client.fhec")).unwrap();
        assert!(client.matches(&server), "v{v}");
        let expected: serde_json::Value = serde_json::from_slice(&read("mlp.expected.json")).unwrap();
        let samples: Vec<Vec<ClearTensor>> = expected["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let x: Vec<i64> = serde_json::from_value(x.clone()).unwrap();
                vec![ClearTensor::new(vec![1, 4], x).unwrap()]
            })
            .collect();
        let want: Vec<Vec<i64>> = serde_json::from_value(expected["outputs"].clone()).unwrap();
        let got: Vec<Vec<i64>> = round_trip(&server, &client, &samples)
            .into_iter()
            .map(|s| s[0].values.clone())
            .collect();
        assert_eq!(got, want, "v{v}");
        let server = ServerModel::from_bytes(&read("logreg.server.fhec")).unwrap();
        let client = ClientModel::from_bytes(&read("logreg.client.fhec")).unwrap();
        assert!(client.matches(&server), "v{v}");
        let (samples, _) = client.encode_rows(&[0.3, -0.7, 1.9], 1).unwrap();
        assert_eq!(
            round_trip(&server, &client, &samples),
            server.program.simulate(&samples).unwrap(),
            "v{v}"
        );
    }
}

#[test]
fn damaged_and_hostile_model_files_are_errors() {
    let (server_bytes, client_bytes) = mlp().model_files("mlp", "program").unwrap();
    // each file read as the other kind
    let e = ServerModel::from_bytes(&client_bytes).err().unwrap();
    assert!(e.to_string().contains("a model's client file"), "{e}");
    let e = ClientModel::from_bytes(&server_bytes).err().unwrap();
    assert!(e.to_string().contains("a model's server file"), "{e}");
    // every truncation
    for n in (0..client_bytes.len()).step_by(97) {
        assert!(
            ClientModel::from_bytes(&client_bytes[..n]).is_err(),
            "client truncated at {n}"
        );
    }
    for n in (0..server_bytes.len()).step_by(997) {
        assert!(
            ServerModel::from_bytes(&server_bytes[..n]).is_err(),
            "server truncated at {n}"
        );
    }
    // a newer version: "upgrade fhec"
    let mut newer = client_bytes.clone();
    newer[5..7].copy_from_slice(&(MODEL_FORMAT_VERSION + 1).to_le_bytes());
    let e = ClientModel::from_bytes(&newer).err().unwrap();
    assert!(e.to_string().contains("newer fhec"), "{e}");
    // a client file naming insecure parameters (a curious server handing out a weak client file)
    let mut json: serde_json::Value = serde_json::from_slice(&client_bytes[7..]).unwrap();
    let noise = json["interface"]["params"]["lwe_noise_bound_log2"].clone();
    assert!(noise.is_number(), "{}", json["interface"]["params"]);
    json["interface"]["params"]["lwe_noise_bound_log2"] = serde_json::json!(1);
    let weak = rio::frame(FileKind::ClientModel, json.to_string().as_bytes());
    let e = ClientModel::from_bytes(&weak).err().unwrap();
    assert!(e.to_string().contains("insecure"), "{e}");
    // a spec that does not describe the program's inputs
    let mut json: serde_json::Value = serde_json::from_slice(&client_bytes[7..]).unwrap();
    json["spec"]["inputs"] = serde_json::json!([]);
    let e = ClientModel::from_bytes(&rio::frame(FileKind::ClientModel, json.to_string().as_bytes()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("describes 0 inputs"), "{e}");
    // a spec adding output parts that the program's output does not hold
    let (_, linear_client) = linear().model_files("lin", "program").unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&linear_client[7..]).unwrap();
    json["spec"]["version"] = serde_json::json!(2);
    json["spec"]["outputs"][0]["parts"] = serde_json::json!(2);
    let e = ClientModel::from_bytes(&rio::frame(FileKind::ClientModel, json.to_string().as_bytes()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("the spec adds 2 parts of 2"), "{e}");
    // a model name that would escape a directory
    let mut json: serde_json::Value = serde_json::from_slice(&client_bytes[7..]).unwrap();
    json["info"]["name"] = serde_json::json!("../../etc/passwd");
    let e = ClientModel::from_bytes(&rio::frame(FileKind::ClientModel, json.to_string().as_bytes()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("model name"), "{e}");
    assert!(fhec::ModelInfo::new("a/b", "x").is_err());
    assert!(fhec::ModelInfo::new(".hidden", "x").is_err());
    assert!(fhec::ModelInfo::new("spam-v2.1_final", "x").is_ok());
}

#[test]
fn results_of_one_model_do_not_decrypt_as_another() {
    let a = mlp();
    let b = linear();
    let (_, ca) = a.model_files("a", "program").unwrap();
    let (sb, cb) = b.model_files("b", "LogisticRegression").unwrap();
    let (ca, cb, sb) = (
        ClientModel::from_bytes(&ca).unwrap(),
        ClientModel::from_bytes(&cb).unwrap(),
        ServerModel::from_bytes(&sb).unwrap(),
    );
    assert!(!ca.matches(&sb));
    let progress = Progress::silent();
    let client_b = fhec::Client::keygen(cb.interface.clone()).unwrap();
    let server_b = fhec::Server::new(
        Arc::new(sb.program.clone()),
        client_b.evaluation_keys(&progress),
        &progress,
    )
    .unwrap();
    let (samples, _) = cb.encode_rows(&[0.1, 0.2, 0.3], 1).unwrap();
    let out = server_b
        .run(client_b.encrypt(&samples).unwrap(), &progress, None)
        .unwrap();
    // a client of model a (its own keys) refuses model b's results
    let client_a = fhec::Client::keygen(ca.interface.clone()).unwrap();
    let e = client_a.decrypt(&out).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Mismatch, "{e}");
}
