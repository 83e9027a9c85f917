"""One module per op: the public function, its argument checks, its dispatch and its torch.library registration."""
