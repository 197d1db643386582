import numpy as np
import pytest
import torch

from lgn_nas import gates
from lgn_nas.layers.functional import gate_outputs_16

CORNERS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_ids_follow_truth_table_convention():
    # id = truth table with out(0,0) as the most significant bit
    assert gates.GATE_NAMES[gates.gate_id("AND")] == "AND"
    assert list(gates.TRUTH_TABLES[1]) == [0, 0, 0, 1]
    assert list(gates.TRUTH_TABLES[6]) == [0, 1, 1, 0]
    assert list(gates.TRUTH_TABLES[gates.PASS_A]) == [0, 0, 1, 1]
    assert list(gates.TRUTH_TABLES[gates.PASS_B]) == [0, 1, 0, 1]
    for g in range(16):
        assert gates.truth_table_to_gate(*gates.TRUTH_TABLES[g]) == g


@pytest.mark.parametrize("g", range(16))
def test_basis_relaxation_equals_truth_table_at_corners(g):
    c1, ca, cb, cab = gates.GATE_BASIS[g]
    for k, (a, b) in enumerate(CORNERS):
        assert c1 + ca * a + cb * b + cab * a * b == gates.TRUTH_TABLES[g][k]


@pytest.mark.parametrize("g", range(16))
def test_sixteen_gate_formulas_match_basis_everywhere(g):
    a, b = torch.rand(100, dtype=torch.float64), torch.rand(100, dtype=torch.float64)
    c1, ca, cb, cab = gates.gate_basis(torch.float64)[g]
    expected = c1 + ca * a + cb * b + cab * a * b
    torch.testing.assert_close(gate_outputs_16(a, b)[:, g], expected)


@pytest.mark.parametrize("g", range(16))
def test_bit_ops_match_truth_table(g):
    a = np.array([0, 0, 1, 1], dtype=np.uint8)
    b = np.array([0, 1, 0, 1], dtype=np.uint8)
    assert list(gates.apply_gate_bits(g, a, b) & 1) == list(gates.TRUTH_TABLES[g])
    # 64 independent samples per word
    wa, wb = np.uint64(0b0011), np.uint64(0b0101)  # bit 3 - k holds corner k
    word = gates.apply_gates_bits(np.array([g]), np.array([[wa]]), np.array([[wb]]))[0, 0]
    assert [(int(word) >> (3 - k)) & 1 for k in range(4)] == list(gates.TRUTH_TABLES[g])


def test_apply_gates_bits_bool_arrays():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 16, size=50)
    a = rng.random((50, 8)) < 0.5
    b = rng.random((50, 8)) < 0.5
    out = gates.apply_gates_bits(ids, a, b)
    assert out.dtype == bool
    for i, g in enumerate(ids):
        table = gates.TRUTH_TABLES[g]
        assert (out[i] == table[(2 * a[i] + b[i]).astype(int)].astype(bool)).all()


def test_unknown_gate_names_are_refused():
    with pytest.raises(ValueError, match="unknown gate 'MAYBE'"):
        gates.gate_id("MAYBE")
    with pytest.raises(ValueError, match="gate id 16 is out of range"):
        gates.gate_id(16)
