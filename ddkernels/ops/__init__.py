"""One module per op: the public function, its argument checks, its backend choice and its torch.library operator,
registered through ``_library.define`` (the one autograd mechanism, eager and compiled alike)."""
