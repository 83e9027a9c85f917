"""help() is useful: every public op and nn module has a docstring giving its formula, arguments and what it returns,
and the examples in them run as written (doctest)."""
import doctest
import inspect

import pytest
import torch

import ddkernels
from ddkernels import nn as ddnn

OPS = [ddkernels.multiscale_mse_loss, ddkernels.spectral_l1_loss, ddkernels.spectral_kl_loss,
       ddkernels.pairwise_skl_diversity, ddkernels.pairwise_skl_matrix]
MODULES = [ddnn.SpectralL1Loss, ddnn.SpectralKLLoss, ddnn.PairwiseSKLDiversity, ddnn.MultiScaleMSELoss]


def test_every_public_op_and_module_is_listed():
    public_ops = {name for name in ddkernels.__all__ if name.endswith(("_loss", "_diversity", "_matrix"))}
    assert public_ops == {op.__name__ for op in OPS}
    classes = {name for name, value in vars(ddnn).items()
               if inspect.isclass(value) and issubclass(value, torch.nn.Module) and value.__module__ == ddnn.__name__}
    assert classes == {module.__name__ for module in MODULES}


@pytest.mark.parametrize("function", OPS, ids=lambda f: f.__name__)
def test_op_docstrings(function):
    doc = inspect.getdoc(function)
    for section in ("Args:", "Returns:", "Raises:", "Example::"):
        assert section in doc, f"{function.__name__}: no {section}"
    for name in inspect.signature(function).parameters:
        assert f"{name}:" in doc or f"{name}," in doc, f"{function.__name__}: argument {name} not described"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_docstrings(module):
    doc = inspect.getdoc(module)
    assert "Args:" in doc and "Shapes:" in doc and "Example::" in doc
    for name in list(inspect.signature(module.__init__).parameters)[1:]:
        assert f"{name}:" in doc, f"{module.__name__}: argument {name} not described"


@pytest.mark.parametrize("target", OPS + MODULES, ids=lambda t: t.__name__)
def test_docstring_examples_run(target):
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(target, globs={"torch": torch, "ddkernels": ddkernels})
    assert test.examples, f"{target.__name__}: no example"
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
    assert result.failed == 0 and result.attempted == len(test.examples)
