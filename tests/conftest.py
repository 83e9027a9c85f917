import os

import torch

# Without a GPU, the Triton kernels run on CPU tensors in Triton's interpreter. ddkernels imports its
# Triton kernels lazily, so setting the variable here, before any test runs, is early enough.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
