//! Reading and writing numpy `.npy` files of float matrices and sample batches.
//!
//! An `.npy` file (format described in numpy's `numpy.lib.format` module) starts with the
//! magic string `\x93NUMPY`, a major and a minor version byte and a little-endian header
//! length: 2 bytes in version 1.0, 4 bytes in versions 2.0 and 3.0. The header is a Python
//! dict literal with the keys `descr` (the dtype), `fortran_order` and `shape`. It is padded
//! with spaces and ends in a newline, so the raw array data starts at a multiple of 64 bytes.
//! Version 3.0 differs from 2.0 only in encoding the header as UTF-8 instead of Latin-1.
//!
//! The functions come in two layouts:
//!
//! - Matrices ([`read_matrix`], [`write_matrix`]): the array `a` of shape `(r, c)` is the
//!   `r x c` matrix with `m[(i, j)] = a[i, j]`.
//! - Samples ([`read_samples`], [`write_samples`]): a dataset file stores one sample per
//!   row, shape `(N, dim)`, as numpy users expect, while an optlayer batch stores one
//!   sample per column, `dim x N`. These functions transpose between the two.
//!
//! Readers accept float32 and float64 data in either byte order and either memory order
//! and convert it to the requested scalar type. Writers produce version 1.0 files (2.0 when
//! the header exceeds 65535 bytes) in C order with the dtype of the scalar type.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use faer::{Mat, MatRef};
use optlayer_core::{Error, Result, Scalar};

use crate::atomic::write_atomic_with;

/// Magic string at the start of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Alignment in bytes of the start of the array data, as numpy writes it.
const ARRAY_ALIGN: usize = 64;

/// Digits numpy reserves for the first (C order) or last (Fortran order) dimension.
///
/// numpy pads the header with `21 - len(str(dim))` spaces so that the array can grow along
/// that axis while the header is rewritten in place. The padding only changes the total
/// header length when it crosses a multiple of 64 bytes, but matching it keeps the output
/// byte-identical to `np.save` in every case.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// Maximum nesting of brackets in a header, which keeps the recursive parser's stack small.
const MAX_NESTING: usize = 32;

/// Maximum dimension of an array with zero elements.
///
/// An empty array carries no data to check the shape against, but building an empty faer
/// matrix still loops once per column, so a shape like `(0, 2**60)` would hang the reader.
const MAX_EMPTY_DIM: usize = u32::MAX as usize;

/// Number of elements converted per read or write call.
const CHUNK_ELEMENTS: usize = 8192;

/// Number of header characters quoted in error messages.
const MAX_QUOTED_CHARS: usize = 200;

/// Reads a 1-D or 2-D float array from the `.npy` file at `path` as a matrix.
///
/// An array of shape `(r, c)` becomes the `r x c` matrix with `m[(i, j)] = a[i, j]`, and an
/// array of shape `(k,)` becomes a `k x 1` matrix. The dtype may be float32 or float64 in
/// either byte order (`'<f4'`, `'<f8'`, `'>f4'`, `'>f8'`, or native with `'='` or `'|'`),
/// stored in C or Fortran order. Values are converted to `T` by rounding to nearest, and NaN
/// and infinite entries are kept, so callers that need finite data must check it.
///
/// # Errors
///
/// Returns [`Error::Io`] if the file cannot be opened or read. Returns
/// [`Error::InvalidFile`], naming the file and the fault, if the file is not a valid `.npy`
/// file, has an unsupported dtype or number of dimensions, or has fewer or more data bytes
/// than its shape requires.
pub fn read_matrix<T: Scalar>(path: &Path) -> Result<Mat<T>> {
    read_array(path, Layout::Matrix)
}

/// Reads a matrix like [`read_matrix`] and checks that it is `nrows x ncols`.
///
/// # Errors
///
/// Returns the errors of [`read_matrix`], and [`Error::ShapeMismatch`] naming the file, the
/// expected and the found shape if the shapes differ.
pub fn read_matrix_with_shape<T: Scalar>(path: &Path, nrows: usize, ncols: usize) -> Result<Mat<T>> {
    let m = read_matrix::<T>(path)?;
    if (m.nrows(), m.ncols()) != (nrows, ncols) {
        return Err(Error::ShapeMismatch {
            what: format!("the matrix read from {}", path.display()),
            expected: format!("{nrows} x {ncols}"),
            found: format!("{} x {}", m.nrows(), m.ncols()),
        });
    }
    Ok(m)
}

/// Writes `m` to `path` as a 2-D `.npy` array of shape `(m.nrows(), m.ncols())`.
///
/// The file has dtype `T::NPY_DESCR` and C order, and is byte-identical to what `np.save`
/// of numpy 2.4.6 writes for the same C-contiguous array. The write is atomic (see
/// [`write_atomic_with`]): `path` contains either its old contents or the complete new file.
///
/// # Errors
///
/// Returns [`Error::Io`] naming `path` if the file cannot be written, for example because
/// its directory does not exist, and [`Error::InvalidFile`] if `T::NPY_DESCR` is not a
/// float32 or float64 dtype.
pub fn write_matrix<T: Scalar>(path: &Path, m: MatRef<'_, T>) -> Result<()> {
    write_c_order(path, m.nrows(), m.ncols(), |i, j| m[(i, j)])
}

/// Reads a dataset with one sample per row from `path` and returns it with one sample per
/// column.
///
/// An array of shape `(N, dim)` becomes the `dim x N` matrix whose column `k` is row `k` of
/// the array, and an array of shape `(N,)` becomes a `1 x N` matrix. Dtypes, byte orders,
/// memory orders and conversion are as in [`read_matrix`].
///
/// # Errors
///
/// Returns the errors of [`read_matrix`].
pub fn read_samples<T: Scalar>(path: &Path) -> Result<Mat<T>> {
    read_array(path, Layout::Samples)
}

/// Reads samples like [`read_samples`] and checks that each sample has dimension `dim`.
///
/// # Errors
///
/// Returns the errors of [`read_samples`], and [`Error::ShapeMismatch`] naming the file, the
/// expected and the found file shape if the dimension differs.
pub fn read_samples_with_dim<T: Scalar>(path: &Path, dim: usize) -> Result<Mat<T>> {
    let batch = read_samples::<T>(path)?;
    if batch.nrows() != dim {
        return Err(Error::ShapeMismatch {
            what: format!("the samples read from {}", path.display()),
            expected: format!("N x {dim} (one sample per row)"),
            found: format!("{} x {}", batch.ncols(), batch.nrows()),
        });
    }
    Ok(batch)
}

/// Writes a batch with one sample per column to `path` as a dataset with one sample per row.
///
/// The file has shape `(batch.ncols(), batch.nrows())`, so row `k` of the array is column `k`
/// of `batch`. Format and atomicity are as in [`write_matrix`].
///
/// # Errors
///
/// Returns the errors of [`write_matrix`].
pub fn write_samples<T: Scalar>(path: &Path, batch: MatRef<'_, T>) -> Result<()> {
    write_c_order(path, batch.ncols(), batch.nrows(), |sample, k| batch[(k, sample)])
}

/// Mapping from the array in the file to the returned matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `a[i, j]` becomes `m[(i, j)]`.
    Matrix,
    /// `a[i, j]` becomes `m[(j, i)]`.
    Samples,
}

impl Layout {
    fn noun(self) -> &'static str {
        match self {
            Layout::Matrix => "a matrix",
            Layout::Samples => "samples",
        }
    }
}

/// Byte order of the elements in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn native() -> Self {
        if cfg!(target_endian = "big") {
            ByteOrder::Big
        } else {
            ByteOrder::Little
        }
    }
}

/// Element size of a supported float dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloatWidth {
    /// float32.
    F4,
    /// float64.
    F8,
}

/// A float dtype that this module reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FloatDtype {
    width: FloatWidth,
    order: ByteOrder,
}

impl FloatDtype {
    /// Parses a dtype string such as `'<f8'`, or returns a reason that names the dtype and
    /// the fix.
    fn parse(descr: &str) -> std::result::Result<Self, String> {
        let (order, code) = match descr.chars().next() {
            Some('<') => (ByteOrder::Little, &descr[1..]),
            Some('>') => (ByteOrder::Big, &descr[1..]),
            Some('=' | '|') => (ByteOrder::native(), &descr[1..]),
            _ => (ByteOrder::native(), descr),
        };
        let width = match code {
            "f4" | "f" => FloatWidth::F4,
            "f8" | "d" => FloatWidth::F8,
            _ => return Err(unsupported_dtype_reason(descr, code)),
        };
        Ok(FloatDtype { width, order })
    }

    fn size(self) -> usize {
        match self.width {
            FloatWidth::F4 => 4,
            FloatWidth::F8 => 8,
        }
    }

    /// Decodes one element from `bytes`, which must be exactly `self.size()` long.
    fn decode<T: Scalar>(self, bytes: &[u8]) -> T {
        match self.width {
            FloatWidth::F4 => {
                let mut raw = [0u8; 4];
                raw.copy_from_slice(bytes);
                let value = match self.order {
                    ByteOrder::Little => f32::from_le_bytes(raw),
                    ByteOrder::Big => f32::from_be_bytes(raw),
                };
                T::lit(f64::from(value))
            }
            FloatWidth::F8 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                let value = match self.order {
                    ByteOrder::Little => f64::from_le_bytes(raw),
                    ByteOrder::Big => f64::from_be_bytes(raw),
                };
                T::lit(value)
            }
        }
    }

    /// Appends the bytes of `value` to `out`.
    fn encode<T: Scalar>(self, value: T, out: &mut Vec<u8>) {
        match self.width {
            FloatWidth::F4 => {
                // Take an `f32` directly, so that NaN payloads survive unchanged.
                let value = match (&value as &dyn std::any::Any).downcast_ref::<f32>() {
                    Some(&value) => value,
                    None => value.to_f64_lossless() as f32,
                };
                match self.order {
                    ByteOrder::Little => out.extend_from_slice(&value.to_le_bytes()),
                    ByteOrder::Big => out.extend_from_slice(&value.to_be_bytes()),
                }
            }
            FloatWidth::F8 => {
                let value = value.to_f64_lossless();
                match self.order {
                    ByteOrder::Little => out.extend_from_slice(&value.to_le_bytes()),
                    ByteOrder::Big => out.extend_from_slice(&value.to_be_bytes()),
                }
            }
        }
    }
}

/// Builds the reason for rejecting the dtype `descr`, whose type code is `code`.
fn unsupported_dtype_reason(descr: &str, code: &str) -> String {
    let kind = match code.chars().next() {
        Some('b') => "boolean",
        Some('i') => "signed integer",
        Some('u') => "unsigned integer",
        Some('f') => "float of a width other than 32 or 64 bits",
        Some('c') => "complex",
        Some('m') => "timedelta",
        Some('M') => "datetime",
        Some('O') => "Python object",
        Some('S' | 'a') => "byte string",
        Some('U') => "Unicode string",
        Some('V') => "raw bytes",
        _ => "unknown type code",
    };
    let fix = if kind == "complex" {
        "save the real and imaginary parts as separate arrays, e.g. arr.real.astype(np.float64)"
    } else {
        "save it with arr.astype(np.float64)"
    };
    format!(
        "unsupported dtype '{descr}' ({kind}); only float32 and float64 arrays ('<f4', '<f8', \
         '>f4', '>f8') can be read, so {fix}"
    )
}

/// Parsed `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    /// The dtype string as stored, e.g. `'<f8'`.
    descr: String,
    dtype: FloatDtype,
    fortran_order: bool,
    shape: Vec<usize>,
    /// Number of bytes before the array data: preamble plus header.
    data_offset: u64,
}

/// Dimensions of the returned matrix and the order in which the file fills it.
#[derive(Debug)]
struct ReadPlan {
    nrows: usize,
    ncols: usize,
    /// Whether each contiguous run of elements in the file fills one column of the matrix
    /// (otherwise one row).
    runs_fill_columns: bool,
    /// Number of data bytes that the shape and dtype require.
    data_len: u64,
}

fn read_array<T: Scalar>(path: &Path, layout: Layout) -> Result<Mat<T>> {
    let file = File::open(path).map_err(|source| io_error("failed to read", path, source))?;
    // The length of a regular file lets the reader reject a wrong data size before it
    // allocates the matrix. Pipes and other special files report no usable length.
    let file_len = match file.metadata() {
        Ok(metadata) if metadata.is_file() => Some(metadata.len()),
        _ => None,
    };
    read_from(BufReader::new(file), path, file_len, layout)
}

/// Reads an array from `reader`, which yields the file at `path` of length `file_len` (if
/// known), from its first byte.
fn read_from<T: Scalar, R: Read>(
    mut reader: R,
    path: &Path,
    file_len: Option<u64>,
    layout: Layout,
) -> Result<Mat<T>> {
    let header = read_header(&mut reader, path)?;
    let plan = plan_read(&header, layout).map_err(|reason| invalid_file(path, reason))?;

    match file_len {
        Some(file_len) => {
            let found = file_len.saturating_sub(header.data_offset);
            check_data_len(&header, plan.data_len, found, true)
                .map_err(|reason| invalid_file(path, reason))?;
            let m = decode_data(&mut reader, header.dtype, &plan)
                .map_err(|source| data_read_error(path, &header, &plan, source))?;
            // The file may have grown since its length was read.
            let mut extra = [0u8; 1];
            let extra_len = read_full(&mut reader, &mut extra)
                .map_err(|source| io_error("failed to read", path, source))?;
            if extra_len > 0 {
                return Err(invalid_file(
                    path,
                    trailing_data_reason(&header, plan.data_len, None),
                ));
            }
            Ok(m)
        }
        None => {
            // Read at most one byte more than needed, so that trailing data is detected
            // without reading an endless stream.
            let mut data = Vec::new();
            reader
                .take(plan.data_len.saturating_add(1))
                .read_to_end(&mut data)
                .map_err(|source| io_error("failed to read", path, source))?;
            let found = data.len() as u64;
            let found_is_exact = found <= plan.data_len;
            check_data_len(&header, plan.data_len, found, found_is_exact)
                .map_err(|reason| invalid_file(path, reason))?;
            decode_data(&mut data.as_slice(), header.dtype, &plan)
                .map_err(|source| data_read_error(path, &header, &plan, source))
        }
    }
}

/// Maps the array shape to the matrix dimensions and checks the data size for overflow.
fn plan_read(header: &Header, layout: Layout) -> std::result::Result<ReadPlan, String> {
    // A 1-D array of shape (k,) is the column (k, 1), which has the same bytes in C and
    // Fortran order. Treating it as Fortran order reads it as one contiguous run.
    let (rows, cols, fortran_order) = match header.shape[..] {
        [k] => (k, 1, true),
        [rows, cols] => (rows, cols, header.fortran_order),
        _ => {
            return Err(format!(
                "the array has shape {} ({} dimensions), but only 1-D and 2-D arrays can be read as {}; \
                 reshape it to 2-D before saving, e.g. with arr.reshape(arr.shape[0], -1)",
                format_shape(&header.shape),
                header.shape.len(),
                layout.noun()
            ));
        }
    };

    let shape = format_shape(&header.shape);
    let count = rows.checked_mul(cols).ok_or_else(|| {
        format!(
            "the shape {shape} overflows: its element count exceeds {}",
            usize::MAX
        )
    })?;
    let data_len = u64::try_from(count)
        .ok()
        .and_then(|count| count.checked_mul(header.dtype.size() as u64))
        .ok_or_else(|| {
            format!(
                "the shape {shape} overflows: its data size exceeds {} bytes",
                u64::MAX
            )
        })?;
    if count == 0 && rows.max(cols) > MAX_EMPTY_DIM {
        return Err(format!(
            "the empty array has shape {shape}, whose largest dimension exceeds {MAX_EMPTY_DIM}; \
             save an empty array with small dimensions, e.g. np.zeros((0, dim))"
        ));
    }

    let (nrows, ncols) = match layout {
        Layout::Matrix => (rows, cols),
        Layout::Samples => (cols, rows),
    };
    // Each contiguous run in the file is a row of the array in C order and a column in
    // Fortran order. A matrix column is an array column, a samples column is an array row.
    let runs_fill_columns = (layout == Layout::Matrix) == fortran_order;
    Ok(ReadPlan {
        nrows,
        ncols,
        runs_fill_columns,
        data_len,
    })
}

/// Checks that `found` data bytes follow the header, or returns the reason they do not.
///
/// `found_is_exact` is false when only a lower bound of the data length is known.
fn check_data_len(
    header: &Header,
    expected: u64,
    found: u64,
    found_is_exact: bool,
) -> std::result::Result<(), String> {
    if found < expected {
        return Err(format!(
            "the data is truncated: {}, but only {found} follow; the file was probably cut off \
             while being written or copied, so write it again",
            data_needs(header, expected)
        ));
    }
    if found > expected {
        return Err(trailing_data_reason(
            header,
            expected,
            found_is_exact.then_some(found),
        ));
    }
    Ok(())
}

/// Builds the reason for rejecting data longer than `expected`, with the exact length if known.
fn trailing_data_reason(header: &Header, expected: u64, found: Option<u64>) -> String {
    let found = match found {
        Some(found) => found.to_string(),
        None => format!("more than {expected}"),
    };
    format!(
        "the file has bytes after the array data: {}, but {found} follow; the file may be \
         corrupt, so write it again with numpy.save",
        data_needs(header, expected)
    )
}

fn data_needs(header: &Header, expected: u64) -> String {
    format!(
        "shape {} with dtype '{}' needs {expected} bytes after the header",
        format_shape(&header.shape),
        header.descr
    )
}

/// Converts an error that occurred while reading the data into a typed error.
fn data_read_error(path: &Path, header: &Header, plan: &ReadPlan, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::UnexpectedEof {
        let reason = format!(
            "the data is truncated: {}, but the file ended early because it shrank while being read",
            data_needs(header, plan.data_len)
        );
        return invalid_file(path, reason);
    }
    io_error("failed to read", path, source)
}

/// Reads the array data from `reader` into a new matrix.
fn decode_data<T: Scalar, R: Read>(reader: &mut R, dtype: FloatDtype, plan: &ReadPlan) -> io::Result<Mat<T>> {
    let mut m = Mat::<T>::zeros(plan.nrows, plan.ncols);
    let (run_count, run_len) = if plan.runs_fill_columns {
        (plan.ncols, plan.nrows)
    } else {
        (plan.nrows, plan.ncols)
    };
    let size = dtype.size();
    let mut buffer = vec![0u8; run_len.min(CHUNK_ELEMENTS) * size];

    for run in 0..run_count {
        let mut start = 0;
        while start < run_len {
            let chunk_len = (run_len - start).min(CHUNK_ELEMENTS);
            let bytes = &mut buffer[..chunk_len * size];
            reader.read_exact(bytes)?;
            for (offset, element) in bytes.chunks_exact(size).enumerate() {
                let value = dtype.decode::<T>(element);
                let position = start + offset;
                if plan.runs_fill_columns {
                    m[(position, run)] = value;
                } else {
                    m[(run, position)] = value;
                }
            }
            start += chunk_len;
        }
    }
    Ok(m)
}

/// Reads the preamble and header from `reader`, leaving it at the start of the data.
fn read_header<R: Read>(reader: &mut R, path: &Path) -> Result<Header> {
    let read_error = |source| io_error("failed to read", path, source);

    let mut preamble = [0u8; 8];
    let preamble_len = read_full(reader, &mut preamble).map_err(read_error)?;
    let start = &preamble[..preamble_len];
    if preamble_len == 0 {
        return Err(invalid_file(
            path,
            "not an .npy file: the file is empty".to_owned(),
        ));
    }
    let magic_len = preamble_len.min(MAGIC.len());
    if start[..magic_len] != MAGIC[..magic_len] {
        return Err(invalid_file(path, bad_magic_reason(start)));
    }

    if preamble_len < preamble.len() {
        return Err(invalid_file(path, truncated_preamble_reason(preamble_len)));
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let (length_field_len, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) | (3, 0) => (4, major == 3),
        _ => {
            let reason = format!(
                "unsupported .npy format version {major}.{minor}; versions 1.0, 2.0 and 3.0 can \
                 be read, so save the array again with numpy.save"
            );
            return Err(invalid_file(path, reason));
        }
    };

    let mut length_field = [0u8; 4];
    let found = read_full(reader, &mut length_field[..length_field_len]).map_err(read_error)?;
    if found < length_field_len {
        return Err(invalid_file(
            path,
            truncated_preamble_reason(preamble_len + found),
        ));
    }
    let header_len = u64::from(u32::from_le_bytes(length_field));

    // `take` bounds the read by the file's real size, so a huge length field in a short
    // file does not allocate the claimed length.
    let mut header_bytes = Vec::new();
    reader
        .take(header_len)
        .read_to_end(&mut header_bytes)
        .map_err(read_error)?;
    if (header_bytes.len() as u64) < header_len {
        let reason = format!(
            "the header is truncated: the header length field is {header_len}, but only {} bytes follow",
            header_bytes.len()
        );
        return Err(invalid_file(path, reason));
    }

    let text = decode_header_text(&header_bytes, utf8).map_err(|reason| invalid_file(path, reason))?;
    let (descr, dtype, fortran_order, shape) =
        interpret_header(&text).map_err(|reason| invalid_file(path, reason))?;
    let data_offset = (preamble.len() + length_field_len) as u64 + header_len;
    Ok(Header {
        descr,
        dtype,
        fortran_order,
        shape,
        data_offset,
    })
}

/// Reads until `buffer` is full or the input ends, and returns the number of bytes read.
fn read_full<R: Read>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn bad_magic_reason(start: &[u8]) -> String {
    let hint = if start.starts_with(b"PK\x03\x04") {
        "; it looks like an .npz archive, so load it with numpy.load and save each array with numpy.save"
    } else {
        "; save arrays with numpy.save"
    };
    format!(
        "not an .npy file: it starts with b\"{}\" instead of the magic string b\"\\x93NUMPY\"{hint}",
        start.escape_ascii()
    )
}

fn truncated_preamble_reason(len: usize) -> String {
    format!(
        "the header is truncated: the file ends after {len} bytes, inside the magic string, \
         version and header length that start an .npy file"
    )
}

/// Decodes the header bytes as Latin-1 (versions 1.0 and 2.0) or UTF-8 (version 3.0).
fn decode_header_text(bytes: &[u8], utf8: bool) -> std::result::Result<String, String> {
    if utf8 {
        String::from_utf8(bytes.to_vec()).map_err(|err| {
            format!(
                "the header is not valid UTF-8, which format version 3.0 requires ({err}); \
                 save the array again with numpy.save"
            )
        })
    } else {
        Ok(bytes.iter().map(|&byte| char::from(byte)).collect())
    }
}

/// Parses the header dict and returns its descr, dtype, fortran_order and shape.
fn interpret_header(text: &str) -> std::result::Result<(String, FloatDtype, bool, Vec<usize>), String> {
    let malformed = |what: String| {
        format!(
            "malformed header: {what}; the header is {}, so save the array again with numpy.save",
            quote_header(text)
        )
    };
    let value = LiteralParser::parse_document(text).map_err(malformed)?;
    let Literal::Dict(entries) = value else {
        return Err(malformed(format!("expected a dict, found {}", value.kind())));
    };

    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        let slot = match &key {
            Literal::Str(name) if name == "descr" => &mut descr,
            Literal::Str(name) if name == "fortran_order" => &mut fortran_order,
            Literal::Str(name) if name == "shape" => &mut shape,
            _ => {
                return Err(malformed(format!(
                    "unexpected key {}; the header dict must have exactly the keys 'descr', \
                     'fortran_order' and 'shape'",
                    quote(&key)
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("the key {} appears twice", quote(&key))));
        }
    }
    let missing = |key: &str| malformed(format!("the key '{key}' is missing"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran_order = fortran_order.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;

    let Literal::Bool(fortran_order) = fortran_order else {
        return Err(malformed(format!(
            "'fortran_order' must be True or False, found {}",
            quote(&fortran_order)
        )));
    };
    let shape = interpret_shape(&shape).map_err(malformed)?;
    let (descr, dtype) = match descr {
        Literal::Str(descr) => {
            let dtype = FloatDtype::parse(&descr)?;
            (descr, dtype)
        }
        Literal::List(_) => {
            return Err(format!(
                "unsupported structured dtype {}; only plain float32 and float64 arrays can be read, \
                 so convert it with numpy.lib.recfunctions.structured_to_unstructured(arr).astype(np.float64)",
                quote(&descr)
            ));
        }
        other => {
            return Err(malformed(format!(
                "'descr' must be a dtype string, found {}",
                quote(&other)
            )));
        }
    };
    Ok((descr, dtype, fortran_order, shape))
}

/// Converts the `shape` value of a header to dimensions.
fn interpret_shape(shape: &Literal) -> std::result::Result<Vec<usize>, String> {
    let Literal::Tuple(items) = shape else {
        return Err(format!(
            "'shape' must be a tuple of integers, found {}",
            quote(shape)
        ));
    };
    let mut dims = Vec::with_capacity(items.len());
    for item in items {
        let Literal::Int(dim) = *item else {
            return Err(format!(
                "'shape' must be a tuple of integers, found {}",
                quote(shape)
            ));
        };
        if dim < 0 {
            return Err(format!("'shape' contains the negative dimension {dim}"));
        }
        let dim = usize::try_from(dim).map_err(|_| {
            format!(
                "the dimension {dim} in 'shape' overflows: it exceeds {}",
                usize::MAX
            )
        })?;
        dims.push(dim);
    }
    Ok(dims)
}

/// Returns the Python repr of `value`, shortened for error messages.
fn quote(value: &Literal) -> String {
    shorten(&value.to_string())
}

/// Returns the header text as a Rust string literal, shortened for error messages.
fn quote_header(text: &str) -> String {
    shorten(&format!("{:?}", text.trim_end()))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Formats a shape like Python's tuple repr: `()`, `(3,)` or `(3, 2)`.
fn format_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_owned(),
        [dim] => format!("({dim},)"),
        dims => {
            let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// Writes a 2-D C-order array of shape `(rows, cols)` whose element `(i, j)` is `element(i, j)`.
fn write_c_order<T: Scalar>(
    path: &Path,
    rows: usize,
    cols: usize,
    element: impl Fn(usize, usize) -> T,
) -> Result<()> {
    let dtype = FloatDtype::parse(T::NPY_DESCR).map_err(|_| {
        let reason = format!(
            "cannot write the scalar type {} because its dtype '{}' is not '<f4', '<f8', '>f4' or '>f8'; \
             convert the matrix to f32 or f64 first",
            T::NAME,
            T::NPY_DESCR
        );
        invalid_file(path, reason)
    })?;
    let header = encode_header(T::NPY_DESCR, false, &[rows, cols]);

    write_atomic_with(path, |writer| {
        writer.write_all(&header)?;
        let mut row_bytes = Vec::with_capacity(cols.min(CHUNK_ELEMENTS) * dtype.size());
        for i in 0..rows {
            for j in 0..cols {
                dtype.encode(element(i, j), &mut row_bytes);
                if row_bytes.len() >= CHUNK_ELEMENTS * dtype.size() {
                    writer.write_all(&row_bytes)?;
                    row_bytes.clear();
                }
            }
        }
        writer.write_all(&row_bytes)
    })
}

/// Builds the preamble and header that numpy 2.4.6 writes for an array of this dtype, order
/// and shape.
///
/// This follows `_write_array_header` in numpy's `numpy/lib/_format_impl.py`: the dict
/// lists its keys in sorted order, then come the growth-axis spaces, then spaces and a
/// newline that make the total length a multiple of 64. Version 1.0 is used unless the
/// header is longer than its 2-byte length field allows, in which case it is version 2.0.
fn encode_header(descr: &str, fortran_order: bool, shape: &[usize]) -> Vec<u8> {
    let fortran_repr = if fortran_order { "True" } else { "False" };
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {fortran_repr}, 'shape': {}, }}",
        format_shape(shape)
    );
    let growth_axis = if fortran_order {
        shape.last()
    } else {
        shape.first()
    };
    if let Some(dim) = growth_axis {
        let digits = dim.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }

    // The header is the dict, at least one space of padding and a newline.
    let unpadded_len = dict.len() + 1;
    let padded_len = |length_field_len: usize| {
        let used = MAGIC.len() + 2 + length_field_len + unpadded_len;
        unpadded_len + ARRAY_ALIGN - used % ARRAY_ALIGN
    };
    let (version, header_len, length_field) = match u16::try_from(padded_len(2)) {
        Ok(len) => (1u8, padded_len(2), len.to_le_bytes().to_vec()),
        Err(_) => {
            let len = u32::try_from(padded_len(4)).expect(
                "a header is shorter than 4 GiB unless the shape has hundreds of millions of dimensions",
            );
            (2u8, padded_len(4), len.to_le_bytes().to_vec())
        }
    };

    let mut bytes = Vec::with_capacity(MAGIC.len() + 2 + length_field.len() + header_len);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[version, 0]);
    bytes.extend_from_slice(&length_field);
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(bytes.len() + header_len - dict.len() - 1, b' ');
    bytes.push(b'\n');
    bytes
}

/// Reads only the header of the `.npy` file at `path` and returns its dtype string as
/// stored (e.g. `'<f8'`) with the element size in bytes, 4 for float32 and 8 for float64.
///
/// The readers convert float32 and float64 silently, so callers that require the file's
/// dtype to match their scalar type check it with this function.
///
/// # Errors
///
/// Returns [`Error::Io`] if the file cannot be opened or read, and [`Error::InvalidFile`] if
/// its header is not a valid `.npy` header of a float32 or float64 array.
pub fn read_dtype(path: &Path) -> Result<(String, usize)> {
    let file = File::open(path).map_err(|source| io_error("failed to read", path, source))?;
    let header = read_header(&mut BufReader::new(file), path)?;
    Ok((header.descr, header.dtype.size()))
}

fn io_error(action: &str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action: action.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

fn invalid_file(path: &Path, reason: String) -> Error {
    Error::InvalidFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// A Python literal in an `.npy` header, the subset that `ast.literal_eval` reads and that
/// headers use.
#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    fn kind(&self) -> &'static str {
        match self {
            Literal::Str(_) => "a string",
            Literal::Int(_) => "an integer",
            Literal::Bool(_) => "a bool",
            Literal::None => "None",
            Literal::Tuple(_) => "a tuple",
            Literal::List(_) => "a list",
            Literal::Dict(_) => "a dict",
        }
    }
}

/// Formats the literal like Python's `repr`, with Rust escapes in strings.
impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(text) => write!(f, "'{}'", text.escape_debug()),
            Literal::Int(value) => write!(f, "{value}"),
            Literal::Bool(true) => f.write_str("True"),
            Literal::Bool(false) => f.write_str("False"),
            Literal::None => f.write_str("None"),
            Literal::Tuple(items) => {
                f.write_str("(")?;
                write_items(f, items)?;
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Literal::List(items) => {
                f.write_str("[")?;
                write_items(f, items)?;
                f.write_str("]")
            }
            Literal::Dict(entries) => {
                f.write_str("{")?;
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_items(f: &mut fmt::Formatter<'_>, items: &[Literal]) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// Recursive-descent parser for the Python literals of an `.npy` header.
///
/// It accepts strings in single or double quotes, decimal integers with an optional sign,
/// `_` separators and the Python 2 `L` suffix, `True`, `False`, `None`, tuples, lists and
/// dicts. Errors name the byte offset in the header.
struct LiteralParser<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// Number of brackets open at `pos`.
    depth: usize,
}

impl<'a> LiteralParser<'a> {
    /// Parses `text` as one literal surrounded by optional whitespace.
    fn parse_document(text: &'a str) -> std::result::Result<Literal, String> {
        let mut parser = LiteralParser {
            text,
            pos: 0,
            depth: 0,
        };
        let value = parser.parse_value()?;
        parser.skip_whitespace();
        if let Some(c) = parser.peek() {
            return Err(format!(
                "unexpected {c:?} at byte {} after the end of the dict",
                parser.pos
            ));
        }
        Ok(value)
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek() {
            if !matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c') {
                break;
            }
            self.pos += 1;
        }
    }

    fn parse_value(&mut self) -> std::result::Result<Literal, String> {
        self.skip_whitespace();
        match self.peek() {
            None => Err("the header ends where a value was expected".to_owned()),
            Some('\'' | '"') => self.parse_string(),
            Some('{') => self.nested(Self::parse_dict),
            Some('(') => self.nested(Self::parse_tuple),
            Some('[') => self.nested(Self::parse_list),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.parse_int(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.parse_name(),
            Some(c) => Err(format!(
                "unexpected {c:?} at byte {} where a value was expected",
                self.pos
            )),
        }
    }

    /// Runs `parse` on a bracketed value, rejecting nesting deeper than `MAX_NESTING`.
    fn nested(
        &mut self,
        parse: fn(&mut Self) -> std::result::Result<Literal, String>,
    ) -> std::result::Result<Literal, String> {
        if self.depth >= MAX_NESTING {
            return Err(format!(
                "brackets at byte {} are nested more than {MAX_NESTING} levels deep",
                self.pos
            ));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn parse_string(&mut self) -> std::result::Result<Literal, String> {
        let start = self.pos;
        let quote = self.bump();
        let unterminated = || format!("the string starting at byte {start} is not terminated");
        let mut text = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(unterminated()),
                Some('\\') => {
                    let escaped = self.bump().ok_or_else(unterminated)?;
                    // NOTE: only the escapes of quotes and backslashes are decoded, because
                    // valid dtype strings contain no others. Python would also decode \n etc.
                    if !matches!(escaped, '\\' | '\'' | '"') {
                        text.push('\\');
                    }
                    text.push(escaped);
                }
                Some(c) if Some(c) == quote => return Ok(Literal::Str(text)),
                Some(c) => text.push(c),
            }
        }
    }

    fn parse_int(&mut self) -> std::result::Result<Literal, String> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_whitespace();

        let too_large = || format!("the integer at byte {start} is too large");
        let mut value: i128 = 0;
        let mut digits = 0;
        while let Some(c) = self.peek() {
            if let Some(digit) = c.to_digit(10) {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i128::from(digit)))
                    .ok_or_else(too_large)?;
                digits += 1;
            } else if c != '_' || digits == 0 {
                break;
            }
            self.pos += 1;
        }
        if digits == 0 {
            return Err(format!("expected digits after the sign at byte {start}"));
        }
        // Python 2 wrote long integers with an L suffix, e.g. (3L, 2L).
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        match self.peek() {
            Some(c) if c.is_ascii_alphanumeric() || c == '.' || c == '_' => Err(format!(
                "the number at byte {start} is not a plain decimal integer (found {c:?} after its digits)"
            )),
            _ => Ok(Literal::Int(if negative { -value } else { value })),
        }
    }

    fn parse_name(&mut self) -> std::result::Result<Literal, String> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        match &self.text[start..self.pos] {
            "True" => Ok(Literal::Bool(true)),
            "False" => Ok(Literal::Bool(false)),
            "None" => Ok(Literal::None),
            name => Err(format!("unknown name '{}' at byte {start}", shorten(name))),
        }
    }

    fn parse_tuple(&mut self) -> std::result::Result<Literal, String> {
        let (mut items, saw_comma) = self.parse_items(')', "tuple")?;
        // `(x)` without a comma is x in parentheses, not a tuple.
        if items.len() == 1 && !saw_comma {
            return Ok(items.remove(0));
        }
        Ok(Literal::Tuple(items))
    }

    fn parse_list(&mut self) -> std::result::Result<Literal, String> {
        let (items, _) = self.parse_items(']', "list")?;
        Ok(Literal::List(items))
    }

    /// Parses comma-separated values up to `close`, after the opening bracket, and returns
    /// them with whether a comma was seen.
    fn parse_items(&mut self, close: char, what: &str) -> std::result::Result<(Vec<Literal>, bool), String> {
        self.pos += 1;
        let mut items = Vec::new();
        let mut saw_comma = false;
        loop {
            self.skip_whitespace();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok((items, saw_comma));
            }
            items.push(self.parse_value()?);
            self.skip_whitespace();
            let at = self.pos;
            match self.bump() {
                Some(',') => saw_comma = true,
                Some(c) if c == close => return Ok((items, saw_comma)),
                Some(c) => {
                    return Err(format!(
                        "expected ',' or '{close}' in a {what} at byte {at}, found {c:?}"
                    ));
                }
                None => {
                    return Err(format!(
                        "the header ends inside a {what}; expected ',' or '{close}'"
                    ));
                }
            }
        }
    }

    fn parse_dict(&mut self) -> std::result::Result<Literal, String> {
        self.pos += 1;
        let mut entries = Vec::new();
        loop {
            self.skip_whitespace();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(Literal::Dict(entries));
            }
            let key = self.parse_value()?;
            self.skip_whitespace();
            let at = self.pos;
            match self.bump() {
                Some(':') => {}
                Some(c) => {
                    return Err(format!(
                        "expected ':' after the key {} at byte {at}, found {c:?}",
                        quote(&key)
                    ));
                }
                None => {
                    return Err(format!(
                        "the header ends after the key {}; expected ':'",
                        quote(&key)
                    ));
                }
            }
            let value = self.parse_value()?;
            entries.push((key, value));
            self.skip_whitespace();
            let at = self.pos;
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok(Literal::Dict(entries)),
                Some(c) => {
                    return Err(format!(
                        "expected ',' or '}}' in a dict at byte {at}, found {c:?}"
                    ));
                }
                None => return Err("the header ends inside the dict; expected ',' or '}'".to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    /// Creates an empty directory under the system temporary directory for one test.
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("optlayer-npy-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Returns the path of a fixture written by `tests/data/make_fixtures.py`.
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("data")
            .join(name)
    }

    /// Returns the entry that the 2-D fixtures store at `a[i, j]`.
    fn grid_value(i: usize, j: usize) -> f64 {
        10.0 * i as f64 + j as f64 + 0.5
    }

    /// Builds an `.npy` file of the given version from a header text and raw data.
    fn npy_bytes(version: (u8, u8), header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[version.0, version.1]);
        let header_len = header.len();
        if version.0 == 1 {
            bytes.extend_from_slice(&u16::try_from(header_len).unwrap().to_le_bytes());
        } else {
            bytes.extend_from_slice(&u32::try_from(header_len).unwrap().to_le_bytes());
        }
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    /// Returns the little-endian float64 bytes of `values`.
    fn f8_bytes(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|value| value.to_le_bytes()).collect()
    }

    /// Builds a version 1.0 header text for a descr and shape given as Python source.
    fn header_text(descr: &str, fortran_order: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran_order}, 'shape': {shape}, }}\n")
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Asserts that `result` failed with `Error::InvalidFile` for `path` and returns the message.
    fn invalid_file_message<T: fmt::Debug>(result: Result<T>, path: &Path) -> String {
        let err = result.unwrap_err();
        let Error::InvalidFile { path: error_path, .. } = &err else {
            panic!("expected Error::InvalidFile, got {err:?}");
        };
        assert_eq!(error_path, path);
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "the message does not name the file: {message}"
        );
        message
    }

    /// Asserts that `m` is the `nrows x ncols` grid with `m[(i, j)] = grid_value(i, j)`.
    fn assert_grid<T: Scalar>(m: &Mat<T>, nrows: usize, ncols: usize) {
        assert_eq!((m.nrows(), m.ncols()), (nrows, ncols));
        for i in 0..nrows {
            for j in 0..ncols {
                assert_eq!(m[(i, j)].to_f64_lossless(), grid_value(i, j), "entry ({i}, {j})");
            }
        }
    }

    /// Asserts that the only file in `dir` is `name`, so no temporary file is left behind.
    fn assert_only_file(dir: &Path, name: &str) {
        let names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![name.to_owned()]);
    }

    /// Small deterministic xorshift generator, so the fuzz tests need no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next_u64() % bound as u64) as usize
        }
    }

    // Round trips.

    #[test]
    fn roundtrip_f64_padded_shapes() {
        let dir = test_dir("roundtrip-f64");
        for (nrows, ncols) in [(3, 5), (7, 1), (1, 7), (9, 9), (0, 3), (3, 0), (0, 0)] {
            let m = Mat::<f64>::from_fn(nrows, ncols, |i, j| {
                grid_value(i, j) * if j % 2 == 0 { 1.0 } else { -1e-3 }
            });
            let path = dir.join(format!("m_{nrows}x{ncols}.npy"));
            write_matrix(&path, m.as_ref()).unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                128 + 8 * (nrows * ncols) as u64
            );
            let read = read_matrix::<f64>(&path).unwrap();
            assert_eq!(read, m, "shape {nrows} x {ncols}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roundtrip_f32_padded_shapes() {
        let dir = test_dir("roundtrip-f32");
        for (nrows, ncols) in [(3, 5), (7, 1), (1, 7), (17, 3)] {
            let m = Mat::<f32>::from_fn(nrows, ncols, |i, j| grid_value(i, j) as f32 / 3.0);
            let path = dir.join(format!("m_{nrows}x{ncols}.npy"));
            write_matrix(&path, m.as_ref()).unwrap();
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                128 + 4 * (nrows * ncols) as u64
            );
            let read = read_matrix::<f32>(&path).unwrap();
            assert_eq!(read, m, "shape {nrows} x {ncols}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roundtrip_strided_views() {
        let dir = test_dir("strided-views");
        let m = Mat::<f64>::from_fn(5, 4, grid_value);
        let path = dir.join("view.npy");

        write_matrix(&path, m.as_ref().transpose()).unwrap();
        let read = read_matrix::<f64>(&path).unwrap();
        assert_eq!(read, m.transpose().to_owned());

        write_matrix(&path, m.as_ref().submatrix(1, 1, 3, 2)).unwrap();
        let read = read_matrix::<f64>(&path).unwrap();
        assert_eq!(read, m.as_ref().submatrix(1, 1, 3, 2).to_owned());

        write_samples(&path, m.as_ref().transpose()).unwrap();
        let read = read_samples::<f64>(&path).unwrap();
        assert_eq!(read, m.transpose().to_owned());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn roundtrip_non_finite_values() {
        let dir = test_dir("non-finite");
        let path = dir.join("non_finite.npy");
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
        let m = Mat::<f64>::from_fn(2, 2, |i, j| values[2 * i + j]);
        write_matrix(&path, m.as_ref()).unwrap();
        let read = read_matrix::<f64>(&path).unwrap();
        assert!(read[(0, 0)].is_nan());
        assert_eq!(read[(0, 1)], f64::INFINITY);
        assert_eq!(read[(1, 0)], f64::NEG_INFINITY);
        assert_eq!(read[(1, 1)], 0.0);
        assert!(read[(1, 1)].is_sign_negative());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn samples_roundtrip_transposes_file() {
        let dir = test_dir("samples");
        let path = dir.join("samples.npy");
        // 3-dimensional samples, 5 of them, one per column.
        let batch = Mat::<f64>::from_fn(3, 5, grid_value);
        write_samples(&path, batch.as_ref()).unwrap();

        let as_matrix = read_matrix::<f64>(&path).unwrap();
        assert_eq!((as_matrix.nrows(), as_matrix.ncols()), (5, 3));
        assert_eq!(as_matrix, batch.transpose().to_owned());
        assert_eq!(read_samples::<f64>(&path).unwrap(), batch);
        assert_eq!(read_samples_with_dim::<f64>(&path, 3).unwrap(), batch);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn f32_file_reads_as_f64() {
        let m = read_matrix::<f64>(&fixture("f4_c_3x2.npy")).unwrap();
        assert_grid(&m, 3, 2);

        let dir = test_dir("f32-as-f64");
        let path = dir.join("third.npy");
        let thirds = Mat::<f32>::from_fn(2, 3, |i, j| (i + j) as f32 / 3.0);
        write_matrix(&path, thirds.as_ref()).unwrap();
        let read = read_matrix::<f64>(&path).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                assert_eq!(read[(i, j)], f64::from(thirds[(i, j)]), "entry ({i}, {j})");
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn f64_file_reads_as_f32_rounded() {
        let m = read_matrix::<f32>(&fixture("f8_c_3x2.npy")).unwrap();
        assert_grid(&m, 3, 2);

        let dir = test_dir("f64-as-f32");
        let path = dir.join("third.npy");
        let thirds = Mat::<f64>::from_fn(2, 3, |i, j| (i + j) as f64 / 3.0 + 1e-12);
        write_matrix(&path, thirds.as_ref()).unwrap();
        let read = read_matrix::<f32>(&path).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                assert_eq!(read[(i, j)], thirds[(i, j)] as f32, "entry ({i}, {j})");
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    // Fixtures written by numpy.

    #[test]
    fn fixture_f8_c_order() {
        let m = read_matrix::<f64>(&fixture("f8_c_3x2.npy")).unwrap();
        assert_grid(&m, 3, 2);
    }

    #[test]
    fn fixture_f4_c_order() {
        let m = read_matrix::<f32>(&fixture("f4_c_3x2.npy")).unwrap();
        assert_grid(&m, 3, 2);
    }

    #[test]
    fn fixture_f4_fortran_order() {
        let m = read_matrix::<f32>(&fixture("f4_fortran_2x3.npy")).unwrap();
        assert_grid(&m, 2, 3);
        let m = read_matrix::<f64>(&fixture("f4_fortran_2x3.npy")).unwrap();
        assert_grid(&m, 2, 3);
    }

    #[test]
    fn fixture_f8_fortran_order() {
        let path = fixture("f8_fortran_4x3.npy");
        let m = read_matrix::<f64>(&path).unwrap();
        assert_grid(&m, 4, 3);
        let samples = read_samples::<f64>(&path).unwrap();
        assert_eq!(samples, m.transpose().to_owned());
    }

    #[test]
    fn fixture_big_endian() {
        let m = read_matrix::<f64>(&fixture("f8_big_endian_2x2.npy")).unwrap();
        assert_grid(&m, 2, 2);
        let m = read_matrix::<f32>(&fixture("f4_big_endian_2x3.npy")).unwrap();
        assert_grid(&m, 2, 3);
    }

    #[test]
    fn fixture_1d_array() {
        let path = fixture("f8_1d_4.npy");
        let column = read_matrix::<f64>(&path).unwrap();
        assert_eq!((column.nrows(), column.ncols()), (4, 1));
        for i in 0..4 {
            assert_eq!(column[(i, 0)], i as f64 + 0.25, "entry {i}");
        }
        let samples = read_samples::<f64>(&path).unwrap();
        assert_eq!(samples, column.transpose().to_owned());
        assert_eq!(read_matrix_with_shape::<f32>(&path, 4, 1).unwrap().nrows(), 4);
    }

    #[test]
    fn fixture_c_order_as_samples() {
        let samples = read_samples_with_dim::<f64>(&fixture("f8_c_4x3.npy"), 3).unwrap();
        assert_eq!((samples.nrows(), samples.ncols()), (3, 4));
        for sample in 0..4 {
            for k in 0..3 {
                assert_eq!(
                    samples[(k, sample)],
                    grid_value(sample, k),
                    "sample {sample}, entry {k}"
                );
            }
        }
    }

    #[test]
    fn write_matrix_matches_numpy_f8() {
        let dir = test_dir("numpy-f8");
        let path = dir.join("out.npy");
        let m = Mat::<f64>::from_fn(3, 2, grid_value);
        write_matrix(&path, m.as_ref()).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(fixture("f8_c_3x2.npy")).unwrap()
        );
        assert_only_file(&dir, "out.npy");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_matrix_matches_numpy_f4() {
        let dir = test_dir("numpy-f4");
        let path = dir.join("out.npy");
        let m = Mat::<f32>::from_fn(3, 2, |i, j| grid_value(i, j) as f32);
        write_matrix(&path, m.as_ref()).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(fixture("f4_c_3x2.npy")).unwrap()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_samples_matches_numpy() {
        let dir = test_dir("numpy-samples");
        let path = dir.join("out.npy");
        let batch = Mat::<f64>::from_fn(3, 4, |k, sample| grid_value(sample, k));
        write_samples(&path, batch.as_ref()).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(fixture("f8_c_4x3.npy")).unwrap()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_matrix_replaces_existing_file() {
        let dir = test_dir("replace");
        let path = dir.join("out.npy");
        fs::write(&path, b"old contents").unwrap();
        let m = Mat::<f64>::from_fn(2, 2, grid_value);
        write_matrix(&path, m.as_ref()).unwrap();
        assert_eq!(read_matrix::<f64>(&path).unwrap(), m);
        assert_only_file(&dir, "out.npy");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_matrix_missing_dir_is_io_error() {
        let dir = test_dir("write-missing-dir");
        let path = dir.join("missing").join("out.npy");
        let m = Mat::<f64>::zeros(2, 2);
        let err = write_matrix(&path, m.as_ref()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "unexpected error: {err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    // Header encoding, compared with the output of numpy 2.4.6.

    #[test]
    fn header_matches_numpy_layouts() {
        // (descr, fortran_order, shape, dict as numpy writes it, spaces before the newline).
        let cases: [(&str, bool, &[usize], &str, usize); 4] = [
            (
                "<f8",
                false,
                &[3, 2],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
                58,
            ),
            (
                "<f8",
                false,
                &[3],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                60,
            ),
            (
                "<f8",
                false,
                &[12345678901, 0],
                "{'descr': '<f8', 'fortran_order': False, 'shape': (12345678901, 0), }",
                48,
            ),
            (
                "<f8",
                true,
                &[2, 3],
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                59,
            ),
        ];
        for (descr, fortran_order, shape, dict, spaces) in cases {
            let mut expected = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
            expected.extend_from_slice(dict.as_bytes());
            expected.extend(std::iter::repeat_n(b' ', spaces));
            expected.push(b'\n');
            assert_eq!(
                encode_header(descr, fortran_order, shape),
                expected,
                "shape {shape:?}"
            );
        }
    }

    #[test]
    fn header_switches_to_version_2() {
        // numpy 2.4.6 writes version 1.0 up to 21817 dimensions of size 1 and 2.0 above.
        let header = encode_header("<f8", false, &[1; 21817]);
        assert_eq!(header.len(), 65536);
        assert_eq!(&header[6..10], &[1, 0, 0xf6, 0xff]);

        let header = encode_header("<f8", false, &[1; 21818]);
        assert_eq!(header.len(), 65600);
        assert_eq!(&header[6..12], &[2, 0, 52, 0, 1, 0]);

        let mut file = encode_header("<f8", false, &[1; 30000]);
        assert_eq!(file.len(), 90112);
        assert_eq!(file.last(), Some(&b'\n'));
        file.extend_from_slice(&f8_bytes(&[7.5]));
        let parsed = read_header(&mut file.as_slice(), Path::new("v2.npy")).unwrap();
        assert_eq!(parsed.shape, vec![1; 30000]);
        assert_eq!(parsed.data_offset, 90112);
    }

    // Other header forms that readers meet.

    #[test]
    fn reads_version_2_and_3() {
        let dir = test_dir("versions");
        let data = f8_bytes(&[0.5, 1.5, 10.5, 11.5]);
        let header = header_text("<f8", "False", "(2, 2)");
        for version in [(1, 0), (2, 0), (3, 0)] {
            let path = write_file(
                &dir,
                &format!("v{}.npy", version.0),
                &npy_bytes(version, &header, &data),
            );
            let m = read_matrix::<f64>(&path).unwrap();
            assert_grid(&m, 2, 2);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_descr_and_header_variants() {
        let dir = test_dir("variants");
        let data = f8_bytes(&[0.5, 1.5, 10.5, 11.5]);
        let headers = [
            header_text("=f8", "False", "(2, 2)"),
            header_text("|f8", "False", "(2, 2)"),
            header_text("f8", "False", "(2, 2)"),
            header_text("<d", "False", "(2, 2)"),
            // Python 2 long integers, double quotes, other key order and no trailing comma.
            "{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}   \n".to_owned(),
            // Spaces inside brackets and an integer with a separator.
            "{ 'descr' : '<f8' , 'fortran_order' : False , 'shape' : ( 0_2 , +2 , ) , }\n".to_owned(),
        ];
        for (index, header) in headers.iter().enumerate() {
            let path = write_file(
                &dir,
                &format!("variant{index}.npy"),
                &npy_bytes((1, 0), header, &data),
            );
            let m = read_matrix::<f64>(&path).unwrap_or_else(|err| panic!("header {header:?}: {err}"));
            assert_grid(&m, 2, 2);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_from_stream_without_length() {
        let path = Path::new("stream.npy");
        let mut bytes = fs::read(fixture("f8_c_3x2.npy")).unwrap();
        let m = read_from::<f64, _>(bytes.as_slice(), path, None, Layout::Matrix).unwrap();
        assert_grid(&m, 3, 2);

        bytes.extend_from_slice(&[0; 8]);
        let result = read_from::<f64, _>(bytes.as_slice(), path, None, Layout::Matrix);
        let message = invalid_file_message(result, path);
        assert!(message.contains("more than 48 follow"), "{message}");

        bytes.truncate(bytes.len() - 16);
        let result = read_from::<f64, _>(bytes.as_slice(), path, None, Layout::Matrix);
        let message = invalid_file_message(result, path);
        assert!(
            message.contains("needs 48 bytes after the header, but only 40 follow"),
            "{message}"
        );
    }

    // Rejected files.

    #[test]
    fn missing_file_is_io_error() {
        let dir = test_dir("missing");
        let path = dir.join("absent.npy");
        let err = read_matrix::<f64>(&path).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        let Error::Io {
            action,
            path: error_path,
            source,
        } = &err
        else {
            panic!("expected Error::Io, got {err:?}");
        };
        assert_eq!(action, "failed to read");
        assert_eq!(error_path, &path);
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn empty_file_rejected() {
        let dir = test_dir("empty");
        let path = write_file(&dir, "empty.npy", b"");
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("the file is empty"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_magic_rejected() {
        let dir = test_dir("magic");
        let path = write_file(&dir, "text.npy", b"a,b\n1,2\n3,4\n");
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("not an .npy file"), "{message}");
        assert!(message.contains("a,b\\n1,2"), "{message}");

        let path = write_file(&dir, "archive.npy", b"PK\x03\x04rest of a zip archive");
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains(".npz archive"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_version_rejected() {
        let dir = test_dir("version");
        let header = header_text("<f8", "False", "(1,)");
        let path = write_file(&dir, "v4.npy", &npy_bytes((4, 0), &header, &f8_bytes(&[1.0])));
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(
            message.contains("unsupported .npy format version 4.0"),
            "{message}"
        );

        let path = write_file(&dir, "v1_1.npy", &npy_bytes((1, 1), &header, &f8_bytes(&[1.0])));
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("version 1.1"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_header_rejected() {
        let dir = test_dir("truncated-header");
        let bytes = fs::read(fixture("f8_c_3x2.npy")).unwrap();
        for len in 1..128 {
            let path = write_file(&dir, "cut.npy", &bytes[..len]);
            let message = invalid_file_message(read_matrix::<f64>(&path), &path);
            assert!(
                message.contains("the header is truncated"),
                "cut at {len}: {message}"
            );
            if len >= 10 {
                assert!(
                    message.contains(&format!("is 118, but only {} bytes follow", len - 10)),
                    "{message}"
                );
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_data_rejected() {
        let dir = test_dir("truncated-data");
        let bytes = fs::read(fixture("f8_c_3x2.npy")).unwrap();
        let path = write_file(&dir, "cut.npy", &bytes[..128 + 40]);
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("the data is truncated"), "{message}");
        assert!(
            message.contains("needs 48 bytes after the header, but only 40 follow"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trailing_bytes_rejected() {
        let dir = test_dir("trailing");
        let mut bytes = fs::read(fixture("f8_c_3x2.npy")).unwrap();
        bytes.extend_from_slice(&[0; 8]);
        let path = write_file(&dir, "long.npy", &bytes);
        let message = invalid_file_message(read_samples::<f64>(&path), &path);
        assert!(
            message.contains("needs 48 bytes after the header, but 56 follow"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn int_dtype_rejected() {
        let path = fixture("i8_2x2.npy");
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(
            message.contains("unsupported dtype '<i8' (signed integer)"),
            "{message}"
        );
        assert!(message.contains("arr.astype(np.float64)"), "{message}");
    }

    #[test]
    fn other_dtypes_rejected() {
        let dir = test_dir("dtypes");
        let cases = [
            ("<c16", "(complex)"),
            ("|b1", "(boolean)"),
            ("<u2", "(unsigned integer)"),
            ("<f2", "(float of a width other than 32 or 64 bits)"),
            ("|O", "(Python object)"),
            ("<U3", "(Unicode string)"),
            ("<M8[ns]", "(datetime)"),
        ];
        for (descr, kind) in cases {
            let header = header_text(descr, "False", "(0,)");
            let path = write_file(&dir, "dtype.npy", &npy_bytes((1, 0), &header, b""));
            let message = invalid_file_message(read_matrix::<f64>(&path), &path);
            assert!(
                message.contains(&format!("unsupported dtype '{descr}' {kind}")),
                "{message}"
            );
        }

        let header = "{'descr': [('x', '<f8'), ('y', '<f8')], 'fortran_order': False, 'shape': (2,), }\n";
        let path = write_file(
            &dir,
            "structured.npy",
            &npy_bytes((1, 0), header, &f8_bytes(&[1.0; 4])),
        );
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(
            message.contains("unsupported structured dtype [('x', '<f8'), ('y', '<f8')]"),
            "{message}"
        );
        assert!(message.contains("structured_to_unstructured"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn three_d_shape_rejected() {
        let path = fixture("f8_3d.npy");
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("shape (2, 3, 4) (3 dimensions)"), "{message}");
        let message = invalid_file_message(read_samples::<f64>(&path), &path);
        assert!(message.contains("read as samples"), "{message}");
    }

    #[test]
    fn zero_d_shape_rejected() {
        let dir = test_dir("zero-d");
        let header = header_text("<f8", "False", "()");
        let path = write_file(&dir, "scalar.npy", &npy_bytes((1, 0), &header, &f8_bytes(&[1.0])));
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("shape () (0 dimensions)"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_headers_rejected() {
        let dir = test_dir("malformed");
        // (header text, expected part of the message).
        let cases = [
            ("", "the header ends where a value was expected"),
            ("['descr']\n", "expected a dict, found a list"),
            (
                "{'descr': '<f8', 'shape': (1,), }\n",
                "the key 'fortran_order' is missing",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, }\n",
                "the key 'shape' is missing",
            ),
            (
                "{'fortran_order': False, 'shape': (1,), }\n",
                "the key 'descr' is missing",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1, }\n",
                "unexpected key 'extra'",
            ),
            (
                "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
                "appears twice",
            ),
            (
                "{'descr': '<f8', 'fortran_order': 0, 'shape': (1,), }\n",
                "must be True or False, found 0",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': 1, }\n",
                "must be a tuple of integers, found 1",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1), }\n",
                "must be a tuple of integers, found 1",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': [1, 2], }\n",
                "must be a tuple of integers, found [1, 2]",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': ('1',), }\n",
                "must be a tuple of integers, found ('1',)",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }\n",
                "negative dimension -1",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1.0,), }\n",
                "not a plain decimal integer",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (0x10,), }\n",
                "not a plain decimal integer",
            ),
            (
                "{'descr': 8, 'fortran_order': False, 'shape': (1,), }\n",
                "'descr' must be a dtype string",
            ),
            (
                "{'descr': '<f8, 'fortran_order': False, 'shape': (1,), }\n",
                "expected ',' or '}' in a dict",
            ),
            ("{'descr': '<f8\n", "is not terminated"),
            ("{'descr' '<f8'}\n", "expected ':' after the key 'descr'"),
            (
                "{'descr': '<f8', 'fortran_order': false, 'shape': (1,), }\n",
                "unknown name 'false'",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), } x\n",
                "after the end of the dict",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,, ), }\n",
                "unexpected ','",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1 2), }\n",
                "expected ',' or ')' in a tuple",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,\n",
                "the header ends where a value was expected",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1\n",
                "the header ends inside a tuple",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-,), }\n",
                "expected digits after the sign",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)",
                "the header ends inside the dict",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,), }\n",
                "is too large",
            ),
        ];
        for (header, expected) in cases {
            let path = write_file(&dir, "bad.npy", &npy_bytes((1, 0), header, &f8_bytes(&[1.0])));
            let message = invalid_file_message(read_matrix::<f64>(&path), &path);
            assert!(message.contains(expected), "header {header:?}: {message}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_utf8_in_version_3_rejected() {
        let dir = test_dir("utf8");
        let mut bytes = npy_bytes((3, 0), &header_text("<f8", "False", "(1,)"), &f8_bytes(&[1.0]));
        // Replace the final newline of the header with a lone continuation byte.
        bytes[10 + header_text("<f8", "False", "(1,)").len() - 1] = 0x80;
        let path = write_file(&dir, "v3.npy", &bytes);
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("not valid UTF-8"), "{message}");

        // The same byte is a Latin-1 character in version 1.0 and makes the trailing text invalid.
        bytes[6] = 1;
        let header = header_text("<f8", "False", "(1,)");
        let mut v1 = npy_bytes((1, 0), &header, &f8_bytes(&[1.0]));
        v1[10 + header.len() - 1] = 0x80;
        let path = write_file(&dir, "v1.npy", &v1);
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("after the end of the dict"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deep_nesting_rejected() {
        let dir = test_dir("nesting");
        let header = format!("{}\n", "[".repeat(60000));
        let path = write_file(&dir, "deep.npy", &npy_bytes((1, 0), &header, b""));
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(message.contains("nested more than 32 levels deep"), "{message}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shape_overflow_rejected() {
        let dir = test_dir("overflow");
        let cases = [
            (
                format!("({}, {})", 1u64 << 40, 1u64 << 40),
                "its element count exceeds",
            ),
            (format!("({}, 4)", 1u64 << 61), "its data size exceeds"),
            (format!("({},)", i128::MAX), "overflows: it exceeds"),
        ];
        for (shape, expected) in cases {
            let header = header_text("<f8", "False", &shape);
            let path = write_file(&dir, "overflow.npy", &npy_bytes((1, 0), &header, b""));
            let message = invalid_file_message(read_matrix::<f64>(&path), &path);
            assert!(message.contains(expected), "shape {shape}: {message}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn huge_shape_in_small_file_rejected() {
        let dir = test_dir("huge-shape");
        let header = header_text("<f8", "False", "(1000000, 1000000)");
        let path = write_file(&dir, "huge.npy", &npy_bytes((1, 0), &header, &f8_bytes(&[1.0])));
        let message = invalid_file_message(read_samples::<f64>(&path), &path);
        assert!(
            message.contains("needs 8000000000000 bytes after the header, but only 8 follow"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_arrays() {
        let dir = test_dir("empty-arrays");
        let header = header_text("<f8", "False", "(0, 3)");
        let path = write_file(&dir, "empty.npy", &npy_bytes((1, 0), &header, b""));
        let m = read_matrix::<f64>(&path).unwrap();
        assert_eq!((m.nrows(), m.ncols()), (0, 3));
        let batch = read_samples_with_dim::<f64>(&path, 3).unwrap();
        assert_eq!((batch.nrows(), batch.ncols()), (3, 0));

        let header = header_text("<f8", "False", &format!("(0, {})", 1u64 << 40));
        let path = write_file(&dir, "wide.npy", &npy_bytes((1, 0), &header, b""));
        let message = invalid_file_message(read_matrix::<f64>(&path), &path);
        assert!(
            message.contains("largest dimension exceeds 4294967295"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_matrix_with_shape_mismatch() {
        let path = fixture("f8_c_3x2.npy");
        let m = read_matrix_with_shape::<f64>(&path, 3, 2).unwrap();
        assert_grid(&m, 3, 2);

        let err = read_matrix_with_shape::<f64>(&path, 2, 3).unwrap_err();
        let Error::ShapeMismatch { expected, found, .. } = &err else {
            panic!("expected Error::ShapeMismatch, got {err:?}");
        };
        assert_eq!(expected, "2 x 3");
        assert_eq!(found, "3 x 2");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("expected 2 x 3, found 3 x 2"), "{message}");
    }

    #[test]
    fn read_samples_with_dim_mismatch() {
        let path = fixture("f8_c_4x3.npy");
        let err = read_samples_with_dim::<f64>(&path, 5).unwrap_err();
        let Error::ShapeMismatch { expected, found, .. } = &err else {
            panic!("expected Error::ShapeMismatch, got {err:?}");
        };
        assert_eq!(expected, "N x 5 (one sample per row)");
        assert_eq!(found, "4 x 3");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains("expected N x 5 (one sample per row), found 4 x 3"),
            "{message}"
        );
    }

    // Fuzzing: no input may panic.

    #[test]
    fn fuzz_random_bytes_no_panic() {
        let dir = test_dir("fuzz-random");
        let path = dir.join("random.npy");
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..500 {
            let len = rng.below(300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            // Half of the inputs start with a valid preamble so that the header parser runs.
            if round % 2 == 0 && len >= 10 {
                bytes[..8].copy_from_slice(b"\x93NUMPY\x01\x00");
                let header_len = rng.below(len - 9) as u16;
                bytes[8..10].copy_from_slice(&header_len.to_le_bytes());
            }
            fs::write(&path, &bytes).unwrap();
            assert!(
                read_matrix::<f64>(&path).is_err(),
                "random input {bytes:?} was accepted"
            );
            let _ = read_samples::<f32>(&path);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_truncated_and_mutated_files_no_panic() {
        let dir = test_dir("fuzz-mutated");
        let path = dir.join("mutated.npy");
        let originals: Vec<Vec<u8>> = [
            "f8_c_3x2.npy",
            "f4_fortran_2x3.npy",
            "f8_1d_4.npy",
            "f8_big_endian_2x2.npy",
        ]
        .iter()
        .map(|name| fs::read(fixture(name)).unwrap())
        .collect();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);

        for original in &originals {
            for len in 0..original.len() {
                fs::write(&path, &original[..len]).unwrap();
                assert!(
                    read_matrix::<f64>(&path).is_err(),
                    "a file cut to {len} bytes was accepted"
                );
            }
        }

        // Header bytes replaced by random bytes or by characters that are meaningful in a
        // header. These inputs are read from memory, with and without a known length, because
        // writing each to disk makes the test slow.
        let specials = b"{}()[],:'\" 0123456789-_LTFNx\n\\";
        let memory_path = Path::new("mutated.npy");
        for round in 0..20000 {
            let mut bytes = originals[round % originals.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let position = rng.below(128);
                bytes[position] = if rng.below(2) == 0 {
                    rng.next_u64() as u8
                } else {
                    specials[rng.below(specials.len())]
                };
            }
            let file_len = Some(bytes.len() as u64);
            let _ = read_from::<f64, _>(bytes.as_slice(), memory_path, file_len, Layout::Matrix);
            let _ = read_from::<f32, _>(bytes.as_slice(), memory_path, None, Layout::Samples);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_header_tokens_no_panic() {
        let tokens = [
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            ",",
            ":",
            " ",
            "'descr'",
            "'fortran_order'",
            "'shape'",
            "'<f8'",
            "'<i8'",
            "True",
            "False",
            "None",
            "3",
            "-2",
            "0",
            "18446744073709551616",
            "L",
            "'",
            "\"",
            "\\",
            "é",
            "\n",
            ".",
        ];
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for _ in 0..20000 {
            let count = rng.below(24);
            let text: String = (0..count).map(|_| tokens[rng.below(tokens.len())]).collect();
            if let Ok((_, _, _, shape)) = interpret_header(&text) {
                let header = Header {
                    descr: "<f8".to_owned(),
                    dtype: FloatDtype::parse("<f8").unwrap(),
                    fortran_order: false,
                    shape,
                    data_offset: 0,
                };
                let _ = plan_read(&header, Layout::Matrix);
            }
        }
    }
}
