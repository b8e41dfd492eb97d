"""Write the .npy fixtures that the tests of crates/train/src/npy.rs read.

Run from any directory with numpy installed:

    python3 crates/train/tests/data/make_fixtures.py

Each entry is distinguishable: a[i, j] = 10*i + j + 0.5 for 2-D arrays,
a[i] = i + 0.25 for the 1-D array and a[i, j, k] = 100*i + 10*j + k for the
3-D array. The tests check these values, so change both together. The files
were written with numpy 2.4.6, whose np.save output the tests compare byte for
byte with write_matrix.
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent


def grid(nrows: int, ncols: int, dtype) -> np.ndarray:
    """Return the nrows x ncols array with a[i, j] = 10*i + j + 0.5."""
    i, j = np.indices((nrows, ncols))
    return (10 * i + j + 0.5).astype(dtype)


def main() -> None:
    # C order (fortran_order False), little-endian float64 and float32.
    np.save(OUT / "f8_c_3x2.npy", grid(3, 2, np.float64))
    np.save(OUT / "f4_c_3x2.npy", grid(3, 2, np.float32))
    # A wider array, read as samples: 4 samples of dimension 3.
    np.save(OUT / "f8_c_4x3.npy", grid(4, 3, np.float64))

    # Fortran order: np.save keeps the column-major layout of an F-contiguous array.
    np.save(OUT / "f4_fortran_2x3.npy", np.asfortranarray(grid(2, 3, np.float32)))
    np.save(OUT / "f8_fortran_4x3.npy", np.asfortranarray(grid(4, 3, np.float64)))

    # Big-endian float64 and float32.
    np.save(OUT / "f8_big_endian_2x2.npy", grid(2, 2, ">f8"))
    np.save(OUT / "f4_big_endian_2x3.npy", grid(2, 3, ">f4"))

    # 1-D array of shape (4,).
    np.save(OUT / "f8_1d_4.npy", np.arange(4, dtype=np.float64) + 0.25)

    # Rejected files: an integer dtype and a 3-D shape.
    np.save(OUT / "i8_2x2.npy", np.array([[1, 2], [3, 4]], dtype=np.int64))
    i, j, k = np.indices((2, 3, 4))
    np.save(OUT / "f8_3d.npy", (100 * i + 10 * j + k).astype(np.float64))


if __name__ == "__main__":
    main()
