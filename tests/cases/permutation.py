import torch

from invertible import Inverse, InvertibleConv1x1, Permute, Reverse, Sequential

from registry import Case


def _pivoting_matrix() -> InvertibleConv1x1:
    # A zero leading entry forces a non-identity row permutation in the LU factors.
    w = torch.tensor([[0.0, 2.0, 1.0], [1.5, -0.5, 0.0], [0.3, 0.0, -3.0]])
    return InvertibleConv1x1.from_matrix(w)


CASES = [
    Case("reverse_vec", Reverse, (5,), bad_shapes=[()]),
    Case("reverse_img", Reverse, (3, 2, 2), bad_shapes=[()]),
    Case("permute_vec", lambda: Permute(6, seed=3), (6,), bad_shapes=[(5,), (4, 2, 2)]),
    # Unseeded: the state_dict check then proves the permutation is saved as a buffer.
    Case("permute_img", lambda: Permute(4), (4, 2, 3), bad_shapes=[(3, 2, 3)]),
    Case("conv1x1_img", lambda: InvertibleConv1x1(4), (4, 3, 3), bad_shapes=[(3, 3, 3), (5,)]),
    Case("conv1x1_vec", lambda: InvertibleConv1x1(5), (5,), bad_shapes=[(4,), ()]),
    Case("conv1x1_seq", lambda: InvertibleConv1x1(3), (3, 5), bad_shapes=[(2, 5)]),
    Case("conv1x1_from_matrix", _pivoting_matrix, (3,)),
    Case(
        "conv1x1_inverse_with_permute",
        lambda: Sequential(Inverse(InvertibleConv1x1(4)), Permute(4), Reverse()),
        (4, 2, 2),
    ),
]
