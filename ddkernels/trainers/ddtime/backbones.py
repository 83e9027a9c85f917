"""DDTime's models: the backbones of experts, students and evaluation models, and a model's parameters as one flat
vector."""
import torch
from torch.func import functional_call

from ddkernels import models


class FlatParameters:
    """A model's parameters as one flat vector, and back to the name -> tensor dict functional_call takes."""

    def __init__(self, model):
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]

    def flatten(self):
        """The model's parameters, detached, as one vector [P]."""
        return torch.cat([p.detach().reshape(-1) for p in self.model.parameters()])

    def __call__(self, theta, x):
        pieces = torch.split(theta, self.sizes)
        params = {name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)}
        return functional_call(self.model, params, (x,))


def build_backbone(name, config, shape):
    """A fresh model of architecture ``name`` (DLinear with RevIN unless --no-revin; the MLP with RevIN and LayerNorm,
    whose forward pass, unlike BatchNorm's, is a pure function of the parameters)."""
    options = {"dlinear": {"revin": config["revin"]}, "mlp": {"input_norm": "revin", "hidden_norm": "layer"}}.get(
        name, {})
    return models.build_model(name, *shape, **options)
