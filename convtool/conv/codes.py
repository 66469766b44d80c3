"""Integer codes the Numba kernels (CPU and CUDA alike) take for borders and pooling kinds.

Module-level ints, so the jitted kernels compile them as constants.
"""

BORDER_ZERO, BORDER_REFLECT, BORDER_SYMMETRIC, BORDER_REPLICATE, BORDER_WRAP = 0, 1, 2, 3, 4
# border code for each convtool border name (numpy.pad semantics); constant fills cval like zero fills 0
BORDER_CODES = {"zero": BORDER_ZERO, "constant": BORDER_ZERO, "reflect": BORDER_REFLECT,
                "symmetric": BORDER_SYMMETRIC, "replicate": BORDER_REPLICATE, "wrap": BORDER_WRAP}
POOL_MAX, POOL_AVG, POOL_L2 = 0, 1, 2
POOL_CODES = {"max": POOL_MAX, "avg": POOL_AVG, "l2": POOL_L2}
