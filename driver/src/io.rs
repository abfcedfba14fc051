//! Integer tensors in files: NumPy `.npy` (read and write) and JSON nested lists.
//!
//! Reading never panics and never allocates more than the file justifies: a truncated file, an
//! unsupported dtype, a ragged JSON list or a non-integer value is an [`IoError`] that says what is wrong.

use fhec_ir::Tensor;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}: not a valid .npy file: {msg}")]
    Npy { path: String, msg: String },
    #[error("{path}: {msg}")]
    Json { path: String, msg: String },
}

fn npy_err(path: &str, msg: impl Into<String>) -> IoError {
    IoError::Npy {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Reads a tensor from a `.npy` file (integer or bool dtype, any byte order, C or Fortran order).
pub fn read_npy(path: &Path) -> Result<Tensor, IoError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| IoError::Read {
        path: name.clone(),
        source,
    })?;
    parse_npy(&bytes).map_err(|m| npy_err(&name, m))
}

/// The header of a `.npy` file and its data bytes.
struct NpyRaw<'a> {
    shape: Vec<usize>,
    fortran: bool,
    descr: String,
    count: usize,
    data: &'a [u8],
}

fn npy_raw(bytes: &[u8]) -> Result<NpyRaw<'_>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing the \\x93NUMPY magic (is it a .npy file?)".into());
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let header = bytes
        .get(hstart..hstart.saturating_add(hlen))
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = header_field(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = match header_field(header, "fortran_order").ok_or("header has no 'fortran_order'")? {
        "True" => true,
        "False" => false,
        f => return Err(format!("bad fortran_order {f}")),
    };
    let shape_txt = header_field(header, "shape").ok_or("header has no 'shape'")?;
    let shape: Vec<usize> = shape_txt
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_txt}")))
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape is too large")?;
    Ok(NpyRaw {
        shape,
        fortran,
        descr,
        count,
        data: &bytes[hstart + hlen..],
    })
}

impl NpyRaw<'_> {
    /// The data's items of `size` bytes, after checking that the data holds exactly the shape's
    /// `count` items (`count · size` computed with overflow checked). Nothing sized by the header may
    /// be allocated before this check.
    fn items(&self, size: usize) -> Result<std::slice::ChunksExact<'_, u8>, String> {
        if size == 0 || self.count.checked_mul(size) != Some(self.data.len()) {
            return Err(format!(
                "data has {} bytes, the header promises {} values of {size} bytes (truncated file?)",
                self.data.len(),
                self.count
            ));
        }
        Ok(self.data.chunks_exact(size))
    }

    /// The values (in the file's order) as a row-major array.
    fn array<T: Clone>(&self, values: Vec<T>) -> Result<ArrayD<T>, String> {
        if self.fortran {
            let rev: Vec<usize> = self.shape.iter().rev().copied().collect();
            let a = ArrayD::from_shape_vec(IxDyn(&rev), values).map_err(|e| e.to_string())?;
            Ok(a.reversed_axes().as_standard_layout().into_owned())
        } else {
            ArrayD::from_shape_vec(IxDyn(&self.shape), values).map_err(|e| e.to_string())
        }
    }
}

/// Parses the bytes of a `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<Tensor, String> {
    let raw = npy_raw(bytes)?;
    let (big, kind, size) = parse_descr(&raw.descr)?;
    // the length check first: the capacity is then what the file holds, not what its header claims
    let items = raw.items(size)?;
    let mut values = Vec::with_capacity(items.len());
    for chunk in items {
        let mut b = [0u8; 8];
        if big {
            b[8 - size..].copy_from_slice(chunk);
            b.reverse();
        } else {
            b[..size].copy_from_slice(chunk);
        }
        let v = u64::from_le_bytes(b);
        values.push(match kind {
            'i' => {
                let shift = 64 - 8 * size as u32;
                ((v << shift) as i64) >> shift
            }
            'u' => i64::try_from(v).map_err(|_| format!("value {v} does not fit in 64-bit signed integers"))?,
            _ => match v {
                0 => 0,
                1 => 1,
                _ => return Err(format!("bool value {v} is neither 0 nor 1")),
            },
        });
    }
    raw.array(values)
}

/// Reads a float matrix (calibration data) from a `.npy` file: float32/float64 or integer dtypes,
/// as `(shape, row-major values)`.
pub fn read_npy_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>), IoError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| IoError::Read {
        path: name.clone(),
        source,
    })?;
    parse_npy_f64(&bytes).map_err(|m| npy_err(&name, m))
}

/// Parses the bytes of a `.npy` file of floats (or integers) into `(shape, row-major f64 values)`.
pub fn parse_npy_f64(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>), String> {
    let raw = npy_raw(bytes)?;
    if !raw.descr.contains('f') {
        let t = parse_npy(bytes)?;
        return Ok((t.shape().to_vec(), t.iter().map(|&v| v as f64).collect()));
    }
    let big = raw.descr.starts_with('>');
    let size: usize = match raw.descr.trim_start_matches(['<', '>', '=', '|']) {
        "f4" => 4,
        "f8" => 8,
        other => return Err(format!("unsupported dtype '{other}': use float32 or float64")),
    };
    let values: Vec<f64> = raw
        .items(size)?
        .map(|c| match (size, big) {
            (4, false) => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            (4, true) => f32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f64,
            (_, false) => f64::from_le_bytes(c.try_into().expect("8 bytes")),
            (_, true) => f64::from_be_bytes(c.try_into().expect("8 bytes")),
        })
        .collect();
    let a = raw.array(values)?;
    Ok((a.shape().to_vec(), a.iter().copied().collect()))
}

/// (big endian, kind, item size) of a supported dtype descriptor.
fn parse_descr(d: &str) -> Result<(bool, char, usize), String> {
    let unsupported =
        || format!("unsupported dtype '{d}': use an integer or bool array (np.int64, np.uint8, np.bool_, ...)");
    let mut chars = d.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let kind = chars.next().ok_or_else(unsupported)?;
    let size: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let big = match order {
        '>' => true,
        '<' | '|' | '=' => false,
        _ => return Err(unsupported()),
    };
    let ok = match kind {
        'i' | 'u' => matches!(size, 1 | 2 | 4 | 8),
        'b' => size == 1,
        _ => false,
    };
    if !ok {
        return Err(unsupported());
    }
    Ok((big, kind, size))
}

/// The raw text of `'key': value` in a header dict (value up to the next top-level comma).
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[k + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    // i64: a header (at most 4 GiB) cannot overflow it, even with only closing brackets
    let mut depth = 0i64;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// The bytes of a `.npy` file (version 1, little-endian int64, C order) holding `t`.
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.join(", ")),
    };
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in t.iter() {
        out.extend(v.to_le_bytes());
    }
    out
}

/// Writes `bytes` to `path` atomically: a sibling temporary file renamed into place, so a failed
/// or interrupted write never leaves a partial file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic_mode(path, bytes, false)
}

/// [`write_atomic`] for secrets: on Unix the file is created readable by its owner only (0600).
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic_mode(path, bytes, true)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], private: bool) -> Result<(), IoError> {
    use std::io::Write;
    let err = |source| IoError::Write {
        path: path.display().to_string(),
        source,
    };
    let Some(name) = path.file_name() else {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    // a device or a pipe (`-o /dev/null`, `-o /dev/stdout`) is written to as it is: a file renamed
    // over it would replace the device node (run as root, /dev/null itself for every process after)
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() && !m.is_dir() {
            let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(err)?;
            return f.write_all(bytes).map_err(err);
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // a fresh, unpredictable sibling name created exclusively (O_EXCL): never an existing file,
    // never a planted symlink, and for secrets 0600 from the first byte
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{}.", name.to_string_lossy());
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(if private { 0o600 } else { 0o644 }));
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut tmp = builder.tempfile_in(dir).map_err(err)?;
    // on any error the temporary file is removed when `tmp` drops
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // make the rename itself durable
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `t` as a `.npy` file, atomically: a failed write leaves no partial file behind.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), IoError> {
    write_atomic(path, &npy_bytes(t))
}

/// Parses a tensor from JSON text: nested lists of integers, or one integer for a scalar.
pub fn parse_json_tensor(text: &str) -> Result<Tensor, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut shape = Vec::new();
    let mut cur = &v;
    while let serde_json::Value::Array(items) = cur {
        shape.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    let mut values = Vec::new();
    collect_json(&v, &shape, &mut values)?;
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| e.to_string())
}

fn collect_json(v: &serde_json::Value, shape: &[usize], out: &mut Vec<i64>) -> Result<(), String> {
    match (v, shape.split_first()) {
        (serde_json::Value::Array(items), Some((&n, rest))) => {
            if items.len() != n {
                return Err(format!(
                    "ragged list: a sublist has {} entries where {n} are expected",
                    items.len()
                ));
            }
            items.iter().try_for_each(|i| collect_json(i, rest, out))
        }
        (serde_json::Value::Number(num), None) => match num.as_i64() {
            Some(i) => {
                out.push(i);
                Ok(())
            }
            None => Err(format!("{num} is not a 64-bit integer")),
        },
        (serde_json::Value::Bool(b), None) => {
            out.push(i64::from(*b));
            Ok(())
        }
        (other, _) => Err(format!("ragged or non-integer value: {other}")),
    }
}

/// Reads a JSON tensor file.
pub fn read_json(path: &Path) -> Result<Tensor, IoError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| IoError::Read {
        path: name.clone(),
        source,
    })?;
    parse_json_tensor(&text).map_err(|msg| IoError::Json { path: name, msg })
}

/// Reads a tensor given on the command line: a `.npy` path, a JSON file path, or inline JSON.
pub fn read_tensor_arg(arg: &str) -> Result<Tensor, IoError> {
    let p = Path::new(arg);
    if arg.ends_with(".npy") {
        return read_npy(p);
    }
    if !p.exists()
        && arg
            .trim_start()
            .starts_with(|c: char| c == '[' || c == '-' || c.is_ascii_digit())
    {
        return parse_json_tensor(arg).map_err(|msg| IoError::Json {
            path: "inline JSON".into(),
            msg,
        });
    }
    read_json(p)
}

/// A tensor as JSON: nested lists, a bare integer for a scalar.
pub fn tensor_to_json(t: &Tensor) -> serde_json::Value {
    fn rec(v: &ndarray::ArrayViewD<'_, i64>) -> serde_json::Value {
        if v.ndim() == 0 {
            return serde_json::Value::from(v.iter().next().copied().unwrap_or(0));
        }
        serde_json::Value::Array(v.outer_iter().map(|s| rec(&s)).collect())
    }
    rec(&t.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Secret files: written under a fresh exclusive name (a symlink planted at the old fixed
    /// temporary name is not followed), 0600 even when replacing a world-readable file, nothing
    /// left behind; a failed write leaves the old file intact.
    #[cfg(unix)]
    #[test]
    fn secret_files_are_written_privately_and_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("client.fhecsk");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("client.fhecsk.partial")).unwrap();
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic_private(&target, b"secret").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"untouched",
            "the planted symlink was followed"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
        // a directory in the way: an error, and nothing written
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    /// `-o /dev/null` (or another device or pipe) is written to, not replaced: a file renamed over it
    /// would replace the device node, and as root /dev/null itself (this session's CI runs read a
    /// compiler's diagnostics from the regular file it had become).
    #[cfg(unix)]
    #[test]
    fn devices_are_written_to_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        assert!(std::fs::metadata(null).unwrap().file_type().is_char_device());
        write_atomic(null, b"discarded").unwrap();
        write_atomic_private(null, b"discarded").unwrap();
        assert!(std::fs::metadata(null).unwrap().file_type().is_char_device());
    }

    /// A `.npy` file with the given header fields and data bytes.
    fn file(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn npy_round_trip() {
        let t = array![[1i64, -2, 3], [4, 5, i64::MIN]].into_dyn();
        assert_eq!(parse_npy(&npy_bytes(&t)).unwrap(), t);
        let s = ndarray::arr0(7i64).into_dyn();
        assert_eq!(parse_npy(&npy_bytes(&s)).unwrap(), s);
        let e = ndarray::Array::<i64, _>::zeros(IxDyn(&[0, 3]));
        assert_eq!(parse_npy(&npy_bytes(&e)).unwrap(), e);
    }

    #[test]
    fn npy_dtypes_and_orders() {
        assert_eq!(
            parse_npy(&file("|u1", false, "(3,)", &[0, 255, 7])).unwrap(),
            array![0, 255, 7].into_dyn()
        );
        assert_eq!(
            parse_npy(&file("|i1", false, "(2,)", &[0xff, 0x80])).unwrap(),
            array![-1, -128].into_dyn()
        );
        assert_eq!(
            parse_npy(&file(">i2", false, "(1,)", &[0xff, 0xfe])).unwrap(),
            array![-2].into_dyn()
        );
        assert_eq!(
            parse_npy(&file("|b1", false, "(2,)", &[1, 0])).unwrap(),
            array![1, 0].into_dyn()
        );
        // Fortran order: column-major data of [[1, 2], [3, 4]]
        assert_eq!(
            parse_npy(&file("|u1", true, "(2, 2)", &[1, 3, 2, 4])).unwrap(),
            array![[1, 2], [3, 4]].into_dyn()
        );
        assert!(parse_npy(&file("<f8", false, "(1,)", &[0; 8]))
            .unwrap_err()
            .contains("unsupported dtype"));
        assert!(parse_npy(&file("<i8", false, "(2,)", &[0; 9]))
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_npy(b"garbage").is_err());
        let full = npy_bytes(&array![1i64, 2, 3].into_dyn());
        for cut in 0..full.len() {
            assert!(parse_npy(&full[..cut]).is_err(), "truncated at {cut} accepted");
        }
    }

    #[test]
    fn npy_floats_for_calibration() {
        let f8: Vec<u8> = [1.5f64, -2.0, 0.25, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy_f64(&file("<f8", false, "(2, 2)", &f8)).unwrap(),
            (vec![2, 2], vec![1.5, -2.0, 0.25, 8.0])
        );
        // Fortran order: the same matrix stored column by column
        let f8t: Vec<u8> = [1.5f64, 0.25, -2.0, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy_f64(&file("<f8", true, "(2, 2)", &f8t)).unwrap().1,
            vec![1.5, -2.0, 0.25, 8.0]
        );
        let f4: Vec<u8> = [0.5f32, -1.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            parse_npy_f64(&file(">f4", false, "(2,)", &f4)).unwrap().1,
            vec![0.5, -1.0]
        );
        // integers are accepted too
        assert_eq!(
            parse_npy_f64(&file("|i1", false, "(2,)", &[0xff, 3])).unwrap().1,
            vec![-1.0, 3.0]
        );
        assert!(parse_npy_f64(&file("<f2", false, "(1,)", &[0; 2]))
            .unwrap_err()
            .contains("float32 or float64"));
        assert!(parse_npy_f64(&file("<f8", false, "(2,)", &[0; 9]))
            .unwrap_err()
            .contains("truncated"));
        let full = file("<f8", false, "(2, 2)", &f8);
        for cut in 0..full.len() {
            assert!(parse_npy_f64(&full[..cut]).is_err(), "truncated at {cut} accepted");
        }
    }

    /// A header whose shape promises far more values than the data holds is refused before
    /// anything is sized by it (was: `Vec::with_capacity(count)` first: a capacity-overflow panic
    /// for 2^61 values, an 8 TiB allocation and abort for 2^40).
    #[test]
    fn npy_a_huge_shape_is_refused_before_allocating() {
        for shape in ["(2305843009213693952,)", "(1099511627776,)", "(1048576, 1048576)"] {
            for descr in ["<i8", "|u1", "|b1"] {
                let e = parse_npy(&file(descr, false, shape, &[0; 8])).unwrap_err();
                assert!(e.contains("the header promises"), "{shape} {descr}: {e}");
            }
            let e = parse_npy_f64(&file("<f8", true, shape, &[0; 8])).unwrap_err();
            assert!(e.contains("the header promises"), "{shape}: {e}");
        }
        // a product that overflows
        for shape in ["(4294967296, 4294967296)", "(18446744073709551615, 2)"] {
            let e = parse_npy(&file("<i8", false, shape, &[0; 8])).unwrap_err();
            assert!(e.contains("too large"), "{shape}: {e}");
        }
        // items × size overflowing: 2^61 eight-byte items, 0 bytes of data
        assert!(parse_npy(&file("<i8", false, "(2305843009213693952,)", &[]))
            .unwrap_err()
            .contains("the header promises"));
        // empty arrays with a huge other dimension: no allocation, an error or an empty array
        for shape in ["(0, 9223372036854775807)", "(0, 18446744073709551615)"] {
            let _ = parse_npy(&file("<i8", false, shape, &[]));
            let _ = parse_npy_f64(&file("<f8", true, shape, &[]));
        }
    }

    /// Random damage (byte flips, header values replaced, truncation) of valid files: an error or a
    /// tensor, never a panic.
    #[test]
    fn npy_never_panics_on_damaged_files() {
        let f8: Vec<u8> = [1.5f64, -2.0, 0.25, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let seeds = [
            npy_bytes(&array![[1i64, -2, 3], [4, 5, i64::MIN]].into_dyn()),
            file("|u1", true, "(2, 2)", &[1, 3, 2, 4]),
            file("<f8", false, "(2, 2)", &f8),
            file(">f4", false, "(2,)", &[0, 0, 0, 1, 0, 0, 0, 2]),
        ];
        let nasty: [&[u8]; 12] = [
            b"-1",
            b"0",
            b"18446744073709551615",
            b"2305843009213693952",
            b"(",
            b")",
            b",",
            b"'",
            b"True",
            b"<f8",
            b"|b1",
            b"",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for k in 0..4000 {
            let mut b = seeds[k % seeds.len()].clone();
            let i = (next() % b.len() as u64) as usize;
            match next() % 4 {
                0 => b[i] ^= (next() >> 32) as u8 | 1,
                1 => {
                    let end = (i + 1 + (next() % 4) as usize).min(b.len());
                    let with = nasty[(next() % nasty.len() as u64) as usize];
                    b.splice(i..end, with.iter().copied());
                }
                2 => b.truncate(i),
                _ => {
                    // the header's length field or a shape digit
                    let j = (8 + (next() % 4) as usize).min(b.len() - 1);
                    b[j] = (next() >> 24) as u8;
                }
            }
            let r = std::panic::catch_unwind(|| {
                let _ = parse_npy(&b);
                let _ = parse_npy_f64(&b);
            });
            assert!(r.is_ok(), "case {k} panicked on {:?}", String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn json_tensors() {
        assert_eq!(
            parse_json_tensor("[[1, 2], [3, -4]]").unwrap(),
            array![[1, 2], [3, -4]].into_dyn()
        );
        assert_eq!(parse_json_tensor("5").unwrap(), ndarray::arr0(5).into_dyn());
        assert_eq!(parse_json_tensor("[]").unwrap().shape(), &[0]);
        assert!(parse_json_tensor("[[1], [2, 3]]").unwrap_err().contains("ragged"));
        assert!(parse_json_tensor("[1.5]").unwrap_err().contains("not a 64-bit integer"));
        assert!(parse_json_tensor("[1, [2]]").is_err());
        assert_eq!(tensor_to_json(&array![[1, 2]].into_dyn()).to_string(), "[[1,2]]");
    }
}
