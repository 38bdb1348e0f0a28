"""benchmarks/where_time_goes.py sorts py-spy's samples into the kinds of work the README quotes:
checked on samples written as py-spy writes them (`--format raw`: frames outermost first, ';'
between them, then the sample count)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "where_time_goes.py"


@pytest.fixture(scope="module")
def where_time_goes():
    spec = importlib.util.spec_from_file_location("where_time_goes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CALLER = "<module> (where_time_goes.py:160);step (ops.py:90);conv (convscope/ops/conv.py:60)"
KERNEL = "_conv_forward_by_boxes (convscope/backend/numpy_kernels.py:790)"
OPENBLAS = "(libscipy_openblas64_-32a4b2a6.so)"
NUMPY = "(numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so)"

SAMPLES = {  # leaf frames under the NumPy kernels, with their expected kind of work
    "BLAS multiply-adds": [f"{KERNEL};cblas_sgemm {OPENBLAS};sgemm_kernel_SKYLAKEX {OPENBLAS}",
                           f"{KERNEL};sgemm_beta_SKYLAKEX {OPENBLAS}"],
    "BLAS packing": [f"{KERNEL};sgemm_nn {OPENBLAS};sgemm_oncopy_SKYLAKEX {OPENBLAS}",
                     f"{KERNEL};sgemm_itcopy_SKYLAKEX {OPENBLAS}"],
    "column copies": [f"{KERNEL};box_columns (convscope/backend/numpy_kernels.py:765);"
                      f"raw_array_assign_array {NUMPY}",
                      f"{KERNEL};im2col (convscope/backend/numpy_kernels.py:180);0x7ffadd98bb75 (libc.so.6)"],
    "other NumPy work": [f"{KERNEL};ufunc_generic_fastcall {NUMPY}",
                         f"{KERNEL};box_columns (convscope/backend/numpy_kernels.py:765);"
                         f"buffer (convscope/backend/workspace.py:30);PyArray_Zeros {NUMPY}"],
    "interpreter and the rest": [f"{KERNEL};_PyEval_EvalFrameDefault (python3.11)",
                                 f"{KERNEL};sgemm_nn {OPENBLAS}"],
}


def test_each_sample_is_sorted_by_its_leaf_and_the_python_frame_above_it(where_time_goes):
    for kind, stacks in SAMPLES.items():
        for stack in stacks:
            assert where_time_goes.category(f"{CALLER};{stack}".split(";")) == kind, stack


def test_shares_count_only_samples_inside_the_numpy_kernels(where_time_goes):
    counts = {"BLAS multiply-adds": 50, "BLAS packing": 15, "column copies": 20, "other NumPy work": 10,
              "interpreter and the rest": 5}
    lines = [f"{CALLER};{SAMPLES[kind][0]} {n}" for kind, n in counts.items()]
    lines.append(f"{CALLER};sgemm_kernel_SKYLAKEX {OPENBLAS} 400")  # PyTorch's or the loop's own, outside
    shares = where_time_goes.shares("\n".join(lines))
    assert shares == pytest.approx({kind: n / 100 for kind, n in counts.items()})
    assert where_time_goes.shares(f"{CALLER};sgemm_kernel_SKYLAKEX {OPENBLAS} 3") == {}
