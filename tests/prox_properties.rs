//! Properties every proximal map has, checked on every built-in map and
//! combinator with `optlayer_testing::prox_checks`: firm nonexpansiveness,
//! the subgradient inequality, Moreau's identity against an independent
//! prox of the conjugate, the identity at step zero, and the
//! vector-Jacobian product against finite differences.
//!
//! The maps form one table, [`table`]; a new map is one more entry there.

use std::ops::Range;

use faer::{Mat, MatMut, MatRef};
use optlayer::Prox;
use optlayer::ops::{
    Conjugate, IndicatorPoint, L1Norm, Scaled, SeparableBlock, SeparableSum, Simplex, SquaredL2, Translated,
    Zero,
};
use optlayer_testing::fd::FdOptions;
use optlayer_testing::prox_checks::{
    check_firm_nonexpansiveness, check_moreau_identity, check_prox_optimality, check_vjp, check_zero_step,
};
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

/// `prox_{step·g*}(w)` for a batch `w`: `(out, w, step, data)`.
type ConjugateProx = Box<dyn Fn(MatMut<'_, f64>, MatRef<'_, f64>, f64, MatRef<'_, f64>)>;

/// Builds a map on vectors of length `dim`.
type Build = fn(usize) -> Box<dyn Prox<f64>>;

/// One map under test, buildable on vectors of any length `dim ≥ 1`.
struct Entry {
    name: &'static str,
    /// Builds the map on vectors of length `dim`.
    build: Build,
    /// Data rows the map reads at dimension `dim`.
    data_rows: fn(usize) -> usize,
    /// The prox of the conjugate `g*` from a closed form written here,
    /// independent of the map's own code; `None` where no closed form exists.
    conjugate: Option<fn(usize) -> ConjugateProx>,
    /// Whether the map provides `Prox::value`.
    has_value: bool,
    /// Whether `g` is finite everywhere, so step zero gives the identity.
    finite_everywhere: bool,
    /// Whether the map computes a locally constant output by a formula
    /// that cancels, so rounding of order `ε|v|` can make the finite
    /// differences flag many coordinates as kinks: Moreau's formula
    /// `v − γ prox(v/γ)`, or the simplex threshold `v_i − τ` at a vertex.
    cancels: bool,
}

impl Entry {
    /// An entry with a value, a conjugate, and no cancellation.
    fn new(
        name: &'static str,
        build: Build,
        conjugate: Option<fn(usize) -> ConjugateProx>,
        finite_everywhere: bool,
    ) -> Self {
        Self {
            name,
            build,
            data_rows: |_| 0,
            conjugate,
            has_value: true,
            finite_everywhere,
            cancels: false,
        }
    }

    fn reading_data(mut self, data_rows: fn(usize) -> usize) -> Self {
        self.data_rows = data_rows;
        self
    }

    fn without_value(mut self) -> Self {
        self.has_value = false;
        self
    }

    fn cancelling(mut self) -> Self {
        self.cancels = true;
        self
    }
}

// Parameters of the maps, as functions of the dimension.

fn weights(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 0.4 * (i % 3) as f64).collect()
}

fn shift(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 1.5 * (0.9 * i as f64 + 0.3).sin()).collect()
}

fn point(dim: usize) -> Vec<f64> {
    (0..dim).map(|i| 0.8 * (i as f64).cos()).collect()
}

/// Splits `0..dim` into up to three nonempty contiguous ranges.
fn ranges(dim: usize) -> Vec<Range<usize>> {
    let first = dim.div_ceil(3);
    let second = first + (dim - first).div_ceil(2);
    [0..first, first..second, second..dim]
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect()
}

// Closed-form proxes of conjugates, written independently of the maps.

/// Applies `f(w_j, data_j, out_j)` to every column.
fn per_column(
    mut out: MatMut<'_, f64>,
    w: MatRef<'_, f64>,
    data: MatRef<'_, f64>,
    f: impl Fn(&[f64], MatRef<'_, f64>, &mut [f64]),
) {
    for j in 0..w.ncols() {
        let column: Vec<f64> = (0..w.nrows()).map(|i| w[(i, j)]).collect();
        let mut result = vec![0.0; w.nrows()];
        f(&column, data.subcols(j, 1), &mut result);
        for (i, value) in result.into_iter().enumerate() {
            out[(i, j)] = value;
        }
    }
}

/// The prox of `step · max_i y_i`: `x_i = min(w_i, t)` with
/// `Σ_i (w_i − t)₊ = step`, with `t` found by bisection.
fn prox_max(w: &[f64], step: f64, out: &mut [f64]) {
    let excess = |t: f64| w.iter().map(|&wi| (wi - t).max(0.0)).sum::<f64>() - step;
    let mut high = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut low = w.iter().copied().fold(f64::INFINITY, f64::min) - step;
    for _ in 0..2000 {
        let mid = 0.5 * (low + high);
        if mid <= low || mid >= high {
            break;
        }
        if excess(mid) > 0.0 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let t = 0.5 * (low + high);
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = wi.min(t);
    }
}

/// The projection onto the probability simplex by sorting: with `u` sorted
/// in decreasing order, `τ = (Σ_{i≤ρ} u_i − 1)/ρ` for the largest `ρ` with
/// `u_ρ > τ_ρ`.
fn project_simplex_sorted(w: &[f64], out: &mut [f64]) {
    let mut sorted = w.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    let mut tau = 0.0;
    for (k, &value) in sorted.iter().enumerate() {
        sum += value;
        let candidate = (sum - 1.0) / (k + 1) as f64;
        if value > candidate {
            tau = candidate;
        }
    }
    for (o, &wi) in out.iter_mut().zip(w) {
        *o = (wi - tau).max(0.0);
    }
}

fn clip(radius: Vec<f64>) -> ConjugateProx {
    Box::new(move |out, w, _step, data| {
        per_column(out, w, data, |w, _, out| {
            for i in 0..w.len() {
                out[i] = w[i].clamp(-radius[i], radius[i]);
            }
        })
    })
}

fn table() -> Vec<Entry> {
    vec![
        Entry::new(
            "l1 scalar",
            |_| Box::new(L1Norm::new(0.7).unwrap()),
            Some(|dim| clip(vec![0.7; dim])),
            true,
        ),
        Entry::new(
            "l1 per entry",
            |dim| Box::new(L1Norm::with_weights(weights(dim)).unwrap()),
            Some(|dim| clip(weights(dim))),
            true,
        ),
        Entry::new(
            "l1 learnable",
            |_| Box::new(L1Norm::learnable("lambda", 0.5).unwrap()),
            Some(|dim| clip(vec![0.5; dim])),
            true,
        ),
        // ((w/2)‖·‖²)* = (1/(2w))‖·‖², whose prox at step s is w u/(w + s).
        Entry::new(
            "squared l2",
            |_| Box::new(SquaredL2::new(0.8).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = 0.8 * *w / (0.8 + s))
                })
            }),
            true,
        ),
        // The conjugate of the simplex indicator is max_i y_i.
        Entry::new(
            "simplex",
            |_| Box::new(Simplex),
            Some(|_| Box::new(|out, w, s, data| per_column(out, w, data, |w, _, out| prox_max(w, s, out)))),
            false,
        )
        .cancelling(),
        // The conjugate of zero is the indicator of {0}.
        Entry::new(
            "zero",
            |_| Box::new(Zero),
            Some(|_| Box::new(|mut out, _, _, _| out.fill(0.0))),
            true,
        ),
        // The conjugate of the indicator of {c} is ⟨c, ·⟩, whose prox is u − s c.
        Entry::new(
            "point fixed",
            |dim| Box::new(IndicatorPoint::fixed(point(dim)).unwrap()),
            Some(|dim| {
                let c = point(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = w[i] - s * c[i];
                        }
                    })
                })
            }),
            false,
        ),
        Entry::new(
            "point from data",
            |dim| Box::new(IndicatorPoint::from_data(1, dim).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, d, out| {
                        for i in 0..w.len() {
                            out[i] = w[i] - s * d[(1 + i, 0)];
                        }
                    })
                })
            }),
            false,
        )
        .reading_data(|dim| dim + 1),
        // (a f)* = a f*(·/a): for f = λ‖·‖₁ the ball of radius aλ.
        Entry::new(
            "scaled l1",
            |_| Box::new(Scaled::new(L1Norm::learnable("lambda", 0.5).unwrap(), 1.5).unwrap()),
            Some(|dim| clip(vec![0.75; dim])),
            true,
        ),
        Entry::new(
            "scaled squared l2",
            |_| Box::new(Scaled::new(SquaredL2::new(0.8).unwrap(), 2.0).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = 1.6 * *w / (1.6 + s))
                })
            }),
            true,
        ),
        // A scaled indicator is the same indicator.
        Entry::new(
            "scaled simplex",
            |_| Box::new(Scaled::new(Simplex, 2.0).unwrap()),
            Some(|_| Box::new(|out, w, s, data| per_column(out, w, data, |w, _, out| prox_max(w, s, out)))),
            false,
        )
        .cancelling(),
        // f(· − b)* = f* + ⟨b, ·⟩, whose prox is prox_{s f*}(u − s b).
        Entry::new(
            "translated l1",
            |dim| Box::new(Translated::new(L1Norm::new(0.6).unwrap(), shift(dim)).unwrap()),
            Some(|dim| {
                let b = shift(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        for i in 0..w.len() {
                            out[i] = (w[i] - s * b[i]).clamp(-0.6, 0.6);
                        }
                    })
                })
            }),
            true,
        ),
        Entry::new(
            "translated simplex",
            |dim| Box::new(Translated::new(Simplex, shift(dim)).unwrap()),
            Some(|dim| {
                let b = shift(dim);
                Box::new(move |out, w, s, data| {
                    per_column(out, w, data, |w, _, out| {
                        let moved: Vec<f64> = w.iter().zip(&b).map(|(wi, bi)| wi - s * bi).collect();
                        prox_max(&moved, s, out);
                    })
                })
            }),
            false,
        )
        .cancelling(),
        // ½‖x − d‖² has the conjugate ½‖y‖² + ⟨d, y⟩, with prox (u − s d)/(1 + s).
        Entry::new(
            "translated by data",
            |dim| Box::new(Translated::by_data(SquaredL2::new(1.0).unwrap(), 1, dim).unwrap()),
            Some(|_| {
                Box::new(|out, w, s, data| {
                    per_column(out, w, data, |w, d, out| {
                        for i in 0..w.len() {
                            out[i] = (w[i] - s * d[(1 + i, 0)]) / (1.0 + s);
                        }
                    })
                })
            }),
            true,
        )
        .reading_data(|dim| dim + 1),
        // The conjugate of a separable sum is the sum of the conjugates.
        Entry::new(
            "separable l1, squared l2, zero",
            |dim| {
                let parts: [Build; 3] = [
                    |_| Box::new(L1Norm::new(0.5).unwrap()),
                    |_| Box::new(SquaredL2::new(0.8).unwrap()),
                    |_| Box::new(Zero),
                ];
                let blocks = ranges(dim)
                    .into_iter()
                    .zip(parts)
                    .map(|(rows, part)| SeparableBlock::from_boxed(rows.clone(), part(rows.len())))
                    .collect();
                Box::new(SeparableSum::new(dim, blocks).unwrap())
            },
            Some(|dim| {
                Box::new(move |mut out, w, s, _| {
                    for (k, rows) in ranges(dim).into_iter().enumerate() {
                        for j in 0..w.ncols() {
                            for i in rows.clone() {
                                out[(i, j)] = match k {
                                    0 => w[(i, j)].clamp(-0.5, 0.5),
                                    1 => 0.8 * w[(i, j)] / (0.8 + s),
                                    _ => 0.0,
                                };
                            }
                        }
                    }
                })
            }),
            true,
        ),
        Entry::new(
            "separable simplex, point from data, l1",
            |dim| {
                let mut blocks = Vec::new();
                for (k, rows) in ranges(dim).into_iter().enumerate() {
                    let part: Box<dyn Prox<f64>> = match k {
                        0 => Box::new(Simplex),
                        1 => Box::new(IndicatorPoint::from_data(rows.start, rows.len()).unwrap()),
                        _ => Box::new(L1Norm::learnable("lambda", 0.3).unwrap()),
                    };
                    blocks.push(SeparableBlock::from_boxed(rows, part));
                }
                Box::new(SeparableSum::new(dim, blocks).unwrap())
            },
            Some(|dim| {
                Box::new(move |mut out, w, s, data| {
                    for (k, rows) in ranges(dim).into_iter().enumerate() {
                        for j in 0..w.ncols() {
                            let block: Vec<f64> = rows.clone().map(|i| w[(i, j)]).collect();
                            let mut result = vec![0.0; rows.len()];
                            match k {
                                0 => prox_max(&block, s, &mut result),
                                1 => {
                                    for (r, i) in rows.clone().enumerate() {
                                        result[r] = block[r] - s * data[(i, j)];
                                    }
                                }
                                _ => {
                                    for r in 0..rows.len() {
                                        result[r] = block[r].clamp(-0.3, 0.3);
                                    }
                                }
                            }
                            for (r, i) in rows.clone().enumerate() {
                                out[(i, j)] = result[r];
                            }
                        }
                    }
                })
            }),
            false,
        )
        .reading_data(|dim| dim)
        .cancelling(),
        // (λ‖·‖₁)* is the indicator of the ℓ∞ ball, whose conjugate is λ‖·‖₁
        // again: soft-thresholding at s λ.
        Entry::new(
            "conjugate l1",
            |_| Box::new(Conjugate::new(L1Norm::learnable("lambda", 0.7).unwrap())),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w)
                        .for_each(|faer::unzip!(o, w)| *o = w.signum() * (w.abs() - 0.7 * s).max(0.0))
                })
            }),
            false,
        )
        .without_value()
        .cancelling(),
        Entry::new(
            "conjugate squared l2",
            |_| Box::new(Conjugate::new(SquaredL2::new(0.8).unwrap())),
            Some(|_| {
                Box::new(|out, w, s, _| {
                    faer::zip!(out, w).for_each(|faer::unzip!(o, w)| *o = *w / (1.0 + 0.8 * s))
                })
            }),
            true,
        )
        .without_value(),
        // The conjugate of the simplex indicator is max_i y_i; its own
        // conjugate is the simplex indicator again.
        Entry::new(
            "conjugate simplex",
            |_| Box::new(Conjugate::new(Simplex)),
            Some(|_| {
                Box::new(|out, w, _, data| {
                    per_column(out, w, data, |w, _, out| project_simplex_sorted(w, out))
                })
            }),
            true,
        )
        .without_value()
        .cancelling(),
        // The conjugate of the indicator of {c} is ⟨c, ·⟩; its conjugate is
        // the indicator again, whose prox is c.
        Entry::new(
            "conjugate point",
            |dim| Box::new(Conjugate::new(IndicatorPoint::fixed(point(dim)).unwrap())),
            Some(|dim| {
                let c = point(dim);
                Box::new(move |out, w, _, data| {
                    per_column(out, w, data, |_, _, out| out.copy_from_slice(&c));
                })
            }),
            true,
        )
        .without_value(),
    ]
}

/// A random batch with entries of standard deviation 2, so thresholds and
/// clips near 1 are crossed on both sides.
fn batch(dim: usize, cols: usize, seed: u64) -> Mat<f64> {
    gaussian(dim, cols, seed).as_ref() * 2.0
}

fn data_for(entry: &Entry, dim: usize, cols: usize, seed: u64) -> Mat<f64> {
    gaussian((entry.data_rows)(dim), cols, seed)
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(128))]

    #[test]
    fn every_map_is_firmly_nonexpansive(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let (u, v) = (batch(dim, cols, seed), batch(dim, cols, seed + 1));
            let check = check_firm_nonexpansiveness(&*g, u.as_ref(), v.as_ref(), gamma, data.as_ref()).unwrap();
            prop_assert_eq!(check.pairs, cols, "{}", entry.name);
            prop_assert!(check.passes(1e-10), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn every_prox_satisfies_subgradient_inequality(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let seeds = [batch(dim, cols, seed + 3), batch(dim, cols, seed + 4), batch(dim, cols, seed + 5)];
            let seed_refs: Vec<MatRef<'_, f64>> = seeds.iter().map(|s| s.as_ref()).collect();
            let result = check_prox_optimality(&*g, v.as_ref(), gamma, data.as_ref(), &seed_refs);
            if !entry.has_value {
                prop_assert!(result.is_err(), "{} provides a value: add it to the table", entry.name);
                continue;
            }
            let check = result.unwrap();
            prop_assert_eq!(check.checked + check.skipped_infinite, 3 * cols, "{}", entry.name);
            prop_assert_eq!(check.skipped_infinite, 0, "{}: a prox output lies outside the domain", entry.name);
            prop_assert!(check.passes(1e-9), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn moreau_identity_holds_with_independent_conjugate(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let Some(conjugate) = entry.conjugate else { continue };
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let check = check_moreau_identity(&*g, conjugate(dim), v.as_ref(), gamma, data.as_ref()).unwrap();
            prop_assert_eq!(check.columns, cols);
            prop_assert!(check.passes(1e-12), "{}: {check:?}", entry.name);
        }
    }

    #[test]
    fn zero_step_is_identity_or_finite(dim in 1usize..8, cols in 1usize..4, seed in 0u64..100_000) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let check = check_zero_step(&*g, v.as_ref(), data.as_ref()).unwrap();
            // Indicators project at step zero as well; their output must be finite.
            prop_assert!(check.max_residual.is_finite(), "{}: {check:?}", entry.name);
            if entry.finite_everywhere {
                prop_assert!(check.passes(1e-15), "{}: {check:?}", entry.name);
            }
        }
    }

    #[test]
    fn every_vjp_matches_finite_differences(
        dim in 1usize..8, cols in 1usize..4, gamma in 0.05f64..3.0, seed in 0u64..100_000,
    ) {
        for entry in table() {
            let g = (entry.build)(dim);
            let data = data_for(&entry, dim, cols, seed + 2);
            let v = batch(dim, cols, seed);
            let c = gaussian(dim, cols, seed + 6);
            let check = check_vjp(&*g, v.as_ref(), gamma, data.as_ref(), c.as_ref(), &FdOptions::default()).unwrap();
            // Where every compared derivative is zero, rounding noise of
            // order 1e-10 in the differences makes the relative error 1, so
            // an absolute error that small passes too.
            prop_assert!(check.rel_error < 1e-7 || check.max_abs_error < 1e-8, "{}: {check:?}", entry.name);
            prop_assert_eq!(check.checked + check.skipped_nonsmooth, dim * cols, "{}", entry.name);
            if !entry.cancels {
                prop_assert!(check.skipped_nonsmooth <= 1, "{}: {check:?}", entry.name);
            }
        }
    }
}

#[test]
fn conjugate_of_simplex_is_prox_of_max() {
    // Conjugate(Simplex) is max_i y_i; compare with the bisection prox.
    let g = Conjugate::new(Simplex);
    let v = batch(6, 5, 3);
    for gamma in [0.1, 1.0, 4.0] {
        let mut out = Mat::zeros(6, 5);
        g.prox(out.as_mut(), v.as_ref(), gamma, Mat::zeros(0, 5).as_ref());
        let mut expected = Mat::zeros(6, 5);
        per_column(
            expected.as_mut(),
            v.as_ref(),
            Mat::zeros(0, 5).as_ref(),
            |w, _, out| prox_max(w, gamma, out),
        );
        assert!((&out - &expected).norm_max() < 1e-12, "γ = {gamma}");
    }
}

#[test]
fn independent_references_are_correct() {
    // prox of s·max at w = [3, 1, 0], s = 1: t = 2, so [2, 1, 0].
    let mut out = [0.0; 3];
    prox_max(&[3.0, 1.0, 0.0], 1.0, &mut out);
    assert!(
        (out[0] - 2.0).abs() < 1e-14 && out[1] == 1.0 && out[2] == 0.0,
        "{out:?}"
    );
    // s = 3: Σ (w_i − t)₊ = 3 at t = 0.5, so [0.5, 0.5, 0].
    prox_max(&[3.0, 1.0, 0.0], 3.0, &mut out);
    assert!(
        (out[0] - 0.5).abs() < 1e-14 && (out[1] - 0.5).abs() < 1e-14 && out[2] == 0.0,
        "{out:?}"
    );
    project_simplex_sorted(&[1.5, 2.0, 0.3], &mut out);
    assert!(
        (out[0] - 0.25).abs() < 1e-15 && (out[1] - 0.75).abs() < 1e-15 && out[2] == 0.0,
        "{out:?}"
    );
    assert_eq!(
        ranges(7).into_iter().map(|r| r.len()).collect::<Vec<_>>(),
        vec![3, 2, 2]
    );
    assert_eq!(ranges(1), vec![0..1]);
}
