//! Learnable parameters and their gradients.
//!
//! A model exposes its parameters as an ordered list of matrices through
//! [`Parameterized`]. Gradients use the same order, so the gradient of
//! parameter `i` is `Gradients::tensors()[i]` with the parameter's own shape.
//! Composite types (a splitting made of blocks, a block made of an operator and
//! a prox) list their parts' parameters one part after another.

use faer::{Mat, MatMut, MatRef};

use crate::{Error, Result, Scalar};

/// Name and shape of one learnable parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Name, unique within a model, e.g. "theta".
    pub name: String,
    /// Number of rows.
    pub nrows: usize,
    /// Number of columns.
    pub ncols: usize,
}

/// A type with learnable parameters, each a dense matrix.
///
/// Types without parameters implement it with the provided methods, which
/// report zero parameters.
///
/// After writing parameters through [`param_mut`](Self::param_mut), call
/// [`after_param_update`](Self::after_param_update): it restores invariants
/// such as a unit spectral norm and refreshes derived quantities such as step
/// sizes. The optimizers in `optlayer-train` do this after every step.
pub trait Parameterized<T: Scalar> {
    /// Returns the number of parameter matrices.
    fn param_count(&self) -> usize {
        0
    }

    /// Returns the name and shape of parameter `index`.
    ///
    /// # Panics
    /// If `index >= self.param_count()`.
    fn param_info(&self, index: usize) -> ParamInfo {
        panic!("parameter index {index} out of range: this type has no parameters")
    }

    /// Returns a view of parameter `index`.
    ///
    /// # Panics
    /// If `index >= self.param_count()`.
    fn param(&self, index: usize) -> MatRef<'_, T> {
        panic!("parameter index {index} out of range: this type has no parameters")
    }

    /// Returns a mutable view of parameter `index`.
    ///
    /// # Panics
    /// If `index >= self.param_count()`.
    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        panic!("parameter index {index} out of range: this type has no parameters")
    }

    /// Restores invariants and refreshes derived quantities after the
    /// parameters were written.
    ///
    /// # Errors
    /// When the new parameters are invalid (for example non-finite), or when
    /// no safe step size exists for them.
    fn after_param_update(&mut self) -> Result<()> {
        Ok(())
    }

    /// Returns the warm-start state: values that depend on the history of
    /// the parameters but are not parameters. An example is the vector that
    /// warm-starts a power-iteration norm estimate after each update, with
    /// the estimate itself, from which the step sizes derive.
    ///
    /// A composite type returns its parts' states one part after another,
    /// in parameter order, followed by its own. The count depends only on
    /// the model's structure. A vector that has not been computed yet is a
    /// `0 x 0` matrix (see [`crate::warm_start`]), so it round-trips too.
    /// Types without such state return an empty list.
    fn warm_start_state(&self) -> Vec<Mat<T>> {
        Vec::new()
    }

    /// Restores a state returned by [`warm_start_state`](Self::warm_start_state)
    /// of a model with the same structure, and recomputes the quantities
    /// derived from it, such as step sizes, without a new estimate.
    ///
    /// With the same parameter values as when the state was taken, the model
    /// is then in the state it had at that moment: forward passes and later
    /// [`after_param_update`](Self::after_param_update) calls repeat bit for
    /// bit. This method does not call `after_param_update`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming the expected count or shape, an error
    /// for a non-finite entry or a negative estimate, and the error of a step
    /// rule that rejects the restored estimate. On error the model is
    /// unchanged.
    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        crate::warm_start::check_warm_start_count("a model without warm-start state", state, 0)
    }
}

/// Returns the index of the parameter called `name`.
///
/// # Errors
/// [`Error::UnknownParameter`] listing the names the model has.
pub fn find_param<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P, name: &str) -> Result<usize> {
    (0..model.param_count())
        .find(|&i| model.param_info(i).name == name)
        .ok_or_else(|| Error::UnknownParameter {
            name: name.to_string(),
            available: param_names(model).join(", "),
        })
}

/// Returns the names of all parameters of `model`, in order.
pub fn param_names<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P) -> Vec<String> {
    (0..model.param_count())
        .map(|i| model.param_info(i).name)
        .collect()
}

/// Replaces the parameter called `name` with `value` and calls
/// [`Parameterized::after_param_update`].
///
/// # Errors
/// An unknown name, a shape mismatch, a non-finite entry, or an error from
/// `after_param_update`. On error the model keeps its previous parameters.
pub fn set_param<T: Scalar, P: Parameterized<T> + ?Sized>(
    model: &mut P,
    name: &str,
    value: MatRef<'_, T>,
) -> Result<()> {
    let index = find_param(model, name)?;
    let info = model.param_info(index);
    crate::validate::check_shape(&format!("parameter '{name}'"), value, info.nrows, info.ncols)?;
    crate::validate::check_finite(&format!("parameter '{name}'"), value)?;
    let snapshot = snapshot_params(model);
    model.param_mut(index).copy_from(value);
    if let Err(error) = model.after_param_update() {
        // Leave the model as it was, so a rejected value changes nothing.
        restore_params(model, &snapshot)?;
        return Err(error);
    }
    Ok(())
}

/// Checks that no two parameters of `model` share a name, so that every
/// parameter can be found, set and reported by its name.
///
/// # Errors
/// [`Error::DuplicateParameter`] with the first repeated name.
pub fn check_unique_param_names<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P) -> Result<()> {
    let mut names: Vec<String> = Vec::with_capacity(model.param_count());
    for index in 0..model.param_count() {
        let name = model.param_info(index).name;
        if names.contains(&name) {
            return Err(Error::DuplicateParameter { name });
        }
        names.push(name);
    }
    Ok(())
}

/// Returns a 64-bit hash of the bit patterns of every parameter entry (see
/// [`matrix_fingerprint`]).
///
/// Two calls return the same value exactly when no entry changed (up to hash
/// collisions), which lets a backward pass detect a stale forward result.
pub fn params_fingerprint<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P) -> u64 {
    let mut hash = LaneHash::new();
    for index in 0..model.param_count() {
        hash.write_matrix(model.param(index));
    }
    hash.finish()
}

/// Returns a 64-bit hash of the shape and bit patterns of `m`.
///
/// Changing one entry to another value (NaN payloads aside) always changes
/// the hash. The hash detects changes and is not meant to resist a
/// deliberate collision: changes of several entries chosen against its
/// structure can leave it unchanged.
pub fn matrix_fingerprint<T: Scalar>(m: MatRef<'_, T>) -> u64 {
    let mut hash = LaneHash::new();
    hash.write_matrix(m);
    hash.finish()
}

/// A 64-bit hash over four lanes that take the entries of a column in turn.
///
/// A lane maps its state `s` and a word `w` to `mix(s ^ w)`, where `mix` (a
/// multiplication by an odd constant, a rotation and a second
/// multiplication) is a bijection. With the other words fixed, the final
/// state of a lane is a bijection of any one of its words. The final
/// combination is a bijection of any one lane, so changing one word changes
/// the hash. The second multiplication spreads a change of the sign bit over
/// the upper half of the state: with one multiplication it stayed a single
/// bit, and a chosen change of the lane's next word cancelled it.
///
/// The four chains of multiplications run in parallel on the processor. On
/// a 250 x 250 `f32` matrix the hash takes about 57 µs, against 650 µs for
/// FNV-1a, which multiplies once per byte in a single chain.
struct LaneHash {
    lanes: [u64; 4],
}

/// Odd multipliers with well mixed bits: the 64-bit golden ratio, and the
/// first multiplier of MurmurHash3's finalizer.
const MULTIPLIERS: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xff51_afd7_ed55_8ccd];

fn mix(value: u64) -> u64 {
    value
        .wrapping_mul(MULTIPLIERS[0])
        .rotate_left(29)
        .wrapping_mul(MULTIPLIERS[1])
}

/// Scrambles `value` with the 64-bit finalizer of MurmurHash3 (Austin
/// Appleby, 2011), a bijection in which every input bit changes each output
/// bit with probability close to 1/2.
fn avalanche(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^ (value >> 33)
}

impl LaneHash {
    fn new() -> Self {
        Self {
            lanes: [
                0x243f_6a88_85a3_08d3,
                0x1319_8a2e_0370_7344,
                0xa409_3822_299f_31d0,
                0x082e_fa98_ec4e_6c89,
            ],
        }
    }

    fn write_u64(&mut self, lane: usize, value: u64) {
        self.lanes[lane] = mix(self.lanes[lane] ^ value);
    }

    fn write_matrix<T: Scalar>(&mut self, m: MatRef<'_, T>) {
        self.write_u64(0, m.nrows() as u64);
        self.write_u64(1, m.ncols() as u64);
        let bits = |row: usize, col: usize| m[(row, col)].to_f64_lossless().to_bits();
        for col in 0..m.ncols() {
            let mut row = 0;
            while row + 4 <= m.nrows() {
                for lane in 0..4 {
                    self.write_u64(lane, bits(row + lane, col));
                }
                row += 4;
            }
            for (lane, rest) in (row..m.nrows()).enumerate() {
                self.write_u64(lane, bits(rest, col));
            }
        }
    }

    /// Combines the lanes, each passed through [`avalanche`] first, so that
    /// related changes of two lanes (such as negating one entry of each) do
    /// not cancel in the combination.
    fn finish(&self) -> u64 {
        self.lanes
            .iter()
            .fold(0, |hash, &lane| mix(hash ^ avalanche(lane)))
    }
}

/// Returns the parameter values of `model`, in order; with
/// [`restore_params`], it undoes an update that failed.
pub fn snapshot_params<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P) -> Vec<Mat<T>> {
    (0..model.param_count())
        .map(|i| model.param(i).to_owned())
        .collect()
}

/// Writes `snapshot` (from [`snapshot_params`]) back into `model` and calls
/// [`Parameterized::after_param_update`] to restore derived quantities.
///
/// # Errors
/// From `after_param_update`, which succeeded for these values before.
pub fn restore_params<T: Scalar, P: Parameterized<T> + ?Sized>(
    model: &mut P,
    snapshot: &[Mat<T>],
) -> Result<()> {
    for (index, value) in snapshot.iter().enumerate() {
        model.param_mut(index).copy_from(value);
    }
    model.after_param_update()
}

/// Checks that `grads` has one matrix per parameter of `model`, each of the
/// parameter's shape.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the first parameter that does not match.
pub fn check_grads_shape<T: Scalar, P: Parameterized<T> + ?Sized>(model: &P, grads: &[Mat<T>]) -> Result<()> {
    if grads.len() != model.param_count() {
        return Err(Error::ShapeMismatch {
            what: "gradient list".into(),
            expected: format!(
                "{} matrices (one per parameter of the model)",
                model.param_count()
            ),
            found: format!("{} matrices", grads.len()),
        });
    }
    for (index, grad) in grads.iter().enumerate() {
        let info = model.param_info(index);
        if grad.nrows() != info.nrows || grad.ncols() != info.ncols {
            return Err(Error::ShapeMismatch {
                what: format!("gradient of parameter '{}'", info.name),
                expected: format!("{} x {}", info.nrows, info.ncols),
                found: format!("{} x {}", grad.nrows(), grad.ncols()),
            });
        }
    }
    Ok(())
}

/// Checks that `grads` belongs to `model`: the same parameter names, in
/// order, and shapes.
///
/// # Errors
/// [`Error::ShapeMismatch`] naming the first parameter that differs.
pub fn check_gradients<T: Scalar, P: Parameterized<T> + ?Sized>(
    model: &P,
    grads: &Gradients<T>,
) -> Result<()> {
    check_grads_shape(model, grads.tensors())?;
    for (index, info) in grads.infos().iter().enumerate() {
        let expected = model.param_info(index);
        if info.name != expected.name {
            return Err(Error::ShapeMismatch {
                what: format!("gradient {index}"),
                expected: format!("the gradient of parameter '{}'", expected.name),
                found: format!(
                    "the gradient of parameter '{}'; create it with Gradients::zeros_for(model)",
                    info.name
                ),
            });
        }
    }
    Ok(())
}

/// Gradients of a loss with respect to every parameter of a model, one matrix
/// per parameter in the model's order and with the parameter's shape.
#[derive(Clone, Debug)]
pub struct Gradients<T: Scalar> {
    infos: Vec<ParamInfo>,
    tensors: Vec<Mat<T>>,
}

impl<T: Scalar> Gradients<T> {
    /// Creates zero gradients shaped like the parameters of `model`.
    pub fn zeros_for<P: Parameterized<T> + ?Sized>(model: &P) -> Self {
        let infos: Vec<ParamInfo> = (0..model.param_count()).map(|i| model.param_info(i)).collect();
        let tensors = infos
            .iter()
            .map(|info| Mat::zeros(info.nrows, info.ncols))
            .collect();
        Self { infos, tensors }
    }

    /// Sets every gradient entry to zero.
    pub fn fill_zero(&mut self) {
        for t in &mut self.tensors {
            t.fill(T::zero());
        }
    }

    /// Returns the names and shapes, in parameter order.
    pub fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }

    /// Returns the gradient matrices, in parameter order.
    pub fn tensors(&self) -> &[Mat<T>] {
        &self.tensors
    }

    /// Returns the gradient matrices for accumulation, in parameter order.
    pub fn tensors_mut(&mut self) -> &mut [Mat<T>] {
        &mut self.tensors
    }

    /// Returns the gradient of the parameter called `name`.
    pub fn get(&self, name: &str) -> Option<MatRef<'_, T>> {
        self.infos
            .iter()
            .position(|info| info.name == name)
            .map(|i| self.tensors[i].as_ref())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: T) {
        for t in &mut self.tensors {
            for col in 0..t.ncols() {
                for row in 0..t.nrows() {
                    t[(row, col)] *= factor;
                }
            }
        }
    }

    /// Returns the Euclidean norm of all gradients taken together.
    pub fn norm(&self) -> T {
        crate::columns::norm2(
            self.tensors
                .iter()
                .flat_map(|t| (0..t.ncols()).flat_map(move |j| (0..t.nrows()).map(move |i| t[(i, j)]))),
        )
    }

    /// Checks that every entry is finite.
    ///
    /// # Errors
    /// [`Error::NonFiniteGradient`] naming the parameter and entry.
    pub fn check_finite(&self) -> Result<()> {
        for (info, t) in self.infos.iter().zip(&self.tensors) {
            if let Some((row, col, value)) = crate::columns::first_non_finite(t.as_ref()) {
                return Err(Error::NonFiniteGradient {
                    what: "gradient".to_string(),
                    param: info.name.clone(),
                    row,
                    col,
                    value: value.to_f64_lossless(),
                });
            }
        }
        Ok(())
    }
}

/// Splits `grads` into the leading `count` entries and the rest; composite
/// models use it to hand each part its own gradients.
///
/// # Panics
/// If `grads` has fewer than `count` entries, which means the composite's
/// [`Parameterized::param_count`] disagrees with its parts.
pub fn split_grads<T>(grads: &mut [Mat<T>], count: usize) -> (&mut [Mat<T>], &mut [Mat<T>]) {
    assert!(
        grads.len() >= count,
        "gradient list has {} entries but a part needs {count}",
        grads.len()
    );
    grads.split_at_mut(count)
}

/// Forwards every method to the boxed value, so that a boxed model or map,
/// such as a `Box<dyn Prox<T>>`, can be used wherever a parameterized type
/// is expected.
impl<T: Scalar, P: Parameterized<T> + ?Sized> Parameterized<T> for Box<P> {
    fn param_count(&self) -> usize {
        (**self).param_count()
    }

    fn param_info(&self, index: usize) -> ParamInfo {
        (**self).param_info(index)
    }

    fn param(&self, index: usize) -> MatRef<'_, T> {
        (**self).param(index)
    }

    fn param_mut(&mut self, index: usize) -> MatMut<'_, T> {
        (**self).param_mut(index)
    }

    fn after_param_update(&mut self) -> Result<()> {
        (**self).after_param_update()
    }

    fn warm_start_state(&self) -> Vec<Mat<T>> {
        (**self).warm_start_state()
    }

    fn set_warm_start_state(&mut self, state: &[Mat<T>]) -> Result<()> {
        (**self).set_warm_start_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::matrix_fingerprint;
    use faer::Mat;

    fn sample(nrows: usize, ncols: usize) -> Mat<f64> {
        Mat::from_fn(nrows, ncols, |i, j| ((i * 7 + j * 13) % 11) as f64 - 4.5)
    }

    #[test]
    fn every_single_entry_change_is_seen() {
        let base = sample(7, 5);
        let hash = matrix_fingerprint(base.as_ref());
        for j in 0..5 {
            for i in 0..7 {
                let value = base[(i, j)];
                for changed in [value.next_up(), value.next_down(), -value, 0.0, -0.0] {
                    if changed.to_bits() == value.to_bits() {
                        continue;
                    }
                    let mut other = base.clone();
                    other[(i, j)] = changed;
                    assert_ne!(
                        matrix_fingerprint(other.as_ref()),
                        hash,
                        "entry ({i}, {j}) set to {changed}"
                    );
                }
            }
        }
    }

    #[test]
    fn order_and_shape_are_seen() {
        let base = sample(8, 3);
        let hash = matrix_fingerprint(base.as_ref());
        let mut swapped = base.clone();
        swapped[(0, 0)] = base[(4, 0)];
        swapped[(4, 0)] = base[(0, 0)];
        assert_ne!(base[(0, 0)], base[(4, 0)]);
        assert_ne!(matrix_fingerprint(swapped.as_ref()), hash);

        let flat: Vec<f64> = (0..6).map(|k| k as f64).collect();
        let tall = Mat::from_fn(6, 1, |i, _| flat[i]);
        let square = Mat::from_fn(3, 2, |i, j| flat[i + 3 * j]);
        let wide = Mat::from_fn(1, 6, |_, j| flat[j]);
        let hashes = [tall, square, wide].map(|m| matrix_fingerprint(m.as_ref()));
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[0], hashes[2]);
        assert_ne!(hashes[1], hashes[2]);
    }

    #[test]
    fn views_hash_like_copies() {
        let base = sample(9, 4);
        let transposed_copy = base.transpose().to_owned();
        assert_eq!(
            matrix_fingerprint(transposed_copy.transpose()),
            matrix_fingerprint(base.as_ref())
        );
        assert_eq!(
            matrix_fingerprint(base.as_ref().subrows(2, 5)),
            matrix_fingerprint(base.as_ref().subrows(2, 5).to_owned().as_ref())
        );
        let single = Mat::from_fn(1, 1, |_, _| 0.5f32);
        assert_eq!(
            matrix_fingerprint(single.as_ref()),
            matrix_fingerprint(single.clone().as_ref())
        );
    }

    #[test]
    fn negated_pairs_are_seen() {
        let column = Mat::from_fn(2, 1, |i, _| [1.0, 2.0][i]);
        let negated = Mat::from_fn(2, 1, |i, _| [-1.0, -2.0][i]);
        assert_ne!(
            matrix_fingerprint(column.as_ref()),
            matrix_fingerprint(negated.as_ref())
        );

        let matrix = Mat::from_fn(3, 2, |i, j| (i + 3 * j) as f64 + 0.5);
        let mut changed = matrix.clone();
        changed[(0, 1)] = -changed[(0, 1)];
        changed[(1, 1)] = -changed[(1, 1)];
        assert_ne!(
            matrix_fingerprint(matrix.as_ref()),
            matrix_fingerprint(changed.as_ref())
        );
    }

    #[test]
    fn single_nonzero_entries_differ() {
        // Every 3 x 3 matrix with one nonzero integer entry in [-300, 300).
        let mut seen = std::collections::HashSet::new();
        for k in 0..9 {
            for value in (-300..300).filter(|&v| v != 0) {
                let mut m = Mat::<f64>::zeros(3, 3);
                m[(k % 3, k / 3)] = f64::from(value);
                assert!(
                    seen.insert(matrix_fingerprint(m.as_ref())),
                    "entry ({}, {}) = {value} collides",
                    k % 3,
                    k / 3
                );
            }
        }
    }

    /// A sign flip and the flip of bit 28 of the same lane's next entry: with
    /// a single multiplication in `mix`, the second change cancelled the first.
    #[test]
    fn chosen_pair_in_one_lane_is_seen() {
        let base = Mat::from_fn(8, 1, |i, _| i as f64 + 1.5);
        let mut changed = base.clone();
        changed[(0, 0)] = -changed[(0, 0)];
        changed[(4, 0)] = f64::from_bits(changed[(4, 0)].to_bits() ^ (1 << 28));
        assert_ne!(
            matrix_fingerprint(base.as_ref()),
            matrix_fingerprint(changed.as_ref())
        );
    }
}
