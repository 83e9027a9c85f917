import pytest
import torch
from torch import nn
from torch.func import functional_call

from ddkernels import models

SEQ_LEN, PRED_LEN, CHANNELS, BATCH = 37, 11, 3, 2
# the MLP as trajectory matching builds it (RevIN, LayerNorm: no running statistics); its default, TimeDistill's
# BatchNorm recipe, is tested on its own below
SMALL = {"dlinear": {}, "mlp": {"d_model": 16, "input_norm": "revin", "hidden_norm": "layer"},
         "itransformer": {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32, "dropout": 0.0},
         "patchtst": {"d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32, "dropout": 0.0},
         "tcn": {"hidden": 8, "levels": 3, "dropout": 0.0}}
FEATURE_DIMS = {"dlinear": 2 * SEQ_LEN, "mlp": 16, "itransformer": 16, "patchtst": ((SEQ_LEN + 8 - 16) // 8 + 1) * 16,
                "tcn": 8 * SEQ_LEN}


def small_model(name, **overrides):
    torch.manual_seed(0)
    return models.build_model(name, SEQ_LEN, PRED_LEN, CHANNELS, **{**SMALL[name], **overrides})


def batch(seed=1):
    return torch.randn(BATCH, SEQ_LEN, CHANNELS, generator=torch.Generator().manual_seed(seed)) * 3 + 5


@pytest.mark.parametrize("name", list(models.MODELS))
def test_output_and_feature_shapes(name):
    model = small_model(name)
    x = batch()
    out = model(x)
    assert out.shape == (BATCH, PRED_LEN, CHANNELS) and torch.isfinite(out).all()
    forecast, features = model.forward_features(x)
    # DLinear's forward folds the decomposition into one weight matrix: equal up to rounding
    torch.testing.assert_close(forecast, out, rtol=1e-5, atol=1e-5)
    assert model.feature_dim == FEATURE_DIMS[name]
    assert features.shape == (BATCH, CHANNELS, model.feature_dim) and torch.isfinite(features).all()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert set(model.state_dict()) == {name for name, _ in model.named_parameters()}  # no state but parameters
    with pytest.raises(ValueError, match=rf"expects x of shape \[B, {SEQ_LEN}, {CHANNELS}\]"):
        model(torch.randn(BATCH, SEQ_LEN + 1, CHANNELS))


@pytest.mark.parametrize("name", ["mlp", "itransformer", "patchtst", "tcn"])
def test_default_sizes_build(name):
    model = models.build_model(name, 96, 96, 7)
    assert model(torch.randn(1, 96, 7)).shape == (1, 96, 7)
    assert models.count_parameters(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(models.MODELS))
def test_gradients_reach_every_parameter(name):
    model = small_model(name)
    model(batch()).square().mean().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", list(models.MODELS))
def test_functional_call_matches_and_differentiates_through_an_sgd_step(name):
    model = small_model(name)
    params = {key: value.detach().clone().requires_grad_() for key, value in model.named_parameters()}
    x = batch().requires_grad_()
    target = torch.randn(BATCH, PRED_LEN, CHANNELS)
    torch.testing.assert_close(functional_call(model, params, (x,)), model(x))
    loss = (functional_call(model, params, (x,)) - target).square().mean()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    stepped = {key: value - 0.1 * grad for (key, value), grad in zip(params.items(), grads)}
    outer = (functional_call(model, stepped, (x,)) - target).square().mean()
    outer.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for key, value in params.items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), key


@pytest.mark.parametrize("name", ["itransformer", "patchtst"])
def test_dropout_only_in_train_mode(name):
    model = small_model(name, dropout=0.5)
    x = batch()
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))
    assert all(m.p == 0.0 for m in models.MLPStudent(8, 4, 2).modules() if isinstance(m, nn.Dropout))


def test_mlp_default_is_timedistills_recipe():
    model = models.MLPStudent(SEQ_LEN, PRED_LEN, CHANNELS, d_model=16)
    assert isinstance(model.input_norm, models.MeanCentring)
    assert [type(m) for m in model.seasonal_hidden] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout]
    x = batch()
    model.train()
    model(x)
    running_mean = model.seasonal_hidden[1].running_mean
    assert running_mean.shape == (CHANNELS,) and running_mean.abs().sum() > 0
    model.eval()
    # mean centring: a level shift of the input shifts the forecast by the same amount, exactly in eval mode
    shift = torch.tensor([2.0, -3.0, 0.5])
    torch.testing.assert_close(model(x + shift), model(x) + shift, rtol=0, atol=1e-5)
    forecast, features = model.forward_features(x)
    assert forecast.shape == (BATCH, PRED_LEN, CHANNELS) and features.shape == (BATCH, CHANNELS, 16)
    with pytest.raises(ValueError, match="input_norm must be one of mean, revin, none, got 'std'"):
        models.MLPStudent(SEQ_LEN, PRED_LEN, CHANNELS, input_norm="std")
    with pytest.raises(ValueError, match="hidden_norm must be one of batch, layer, got 'group'"):
        models.MLPStudent(SEQ_LEN, PRED_LEN, CHANNELS, hidden_norm="group")


@pytest.mark.parametrize("affine", [True, False])
def test_revin_round_trip(affine):
    revin = models.RevIN(CHANNELS, affine=affine)
    if affine:
        with torch.no_grad():
            revin.weight.copy_(torch.tensor([0.5, 2.0, -1.5]))
            revin.bias.copy_(torch.tensor([1.0, -0.3, 0.2]))
    x = batch().double()
    normalised, stats = revin(x)
    if not affine:
        torch.testing.assert_close(normalised.mean(1), torch.zeros(BATCH, CHANNELS, dtype=torch.float64))
        torch.testing.assert_close(normalised.std(1, unbiased=False), torch.ones(BATCH, CHANNELS, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(revin.inverse(normalised, stats), x, atol=1e-8, rtol=1e-6)


def test_decomposition_sums_to_input_and_replicates_ends():
    x = torch.randn(2, 20, 3)
    seasonal, trend = models.SeriesDecomposition(5)(x)
    torch.testing.assert_close(seasonal + trend, x)
    padded = torch.cat([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], dim=1)
    expected = torch.stack([padded[:, t:t + 5].mean(1) for t in range(20)], dim=1)
    torch.testing.assert_close(trend, expected)
    _, even_trend = models.SeriesDecomposition(4)(x)
    assert even_trend.shape == x.shape
    torch.testing.assert_close(even_trend[:, 0], (2 * x[:, 0] + x[:, 1] + x[:, 2]) / 4)


def test_dlinear_matches_a_hand_computation():
    model = models.DLinear(seq_len=3, pred_len=2, channels=1, kernel_size=3)
    with torch.no_grad():
        model.seasonal.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]))
        model.seasonal.bias.copy_(torch.tensor([0.5, 0.0]))
        model.trend.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
        model.trend.bias.copy_(torch.tensor([0.0, -1.0]))
    x = torch.tensor([[[3.0], [6.0], [0.0]]])
    # moving average of 3 with replicated ends over [3, 3, 6, 0, 0]: trend [4, 3, 2], seasonal [-1, 3, -2]
    forecast, features = model.forward_features(x)
    expected = torch.tensor([[[-1.0 + 2 * -2.0 + 0.5 + 3.0], [-3.0 + 4.0 + 3.0 + 2.0 - 1.0]]])
    torch.testing.assert_close(forecast, expected)
    torch.testing.assert_close(features, torch.tensor([[[-1.0, 3.0, -2.0, 4.0, 3.0, 2.0]]]))


def test_dlinear_starts_as_a_mean_forecaster():
    model = models.DLinear(SEQ_LEN, PRED_LEN, CHANNELS)
    with torch.no_grad():
        model.seasonal.bias.zero_()
        model.trend.bias.zero_()
    x = batch()
    torch.testing.assert_close(model(x), x.mean(1, keepdim=True).expand(-1, PRED_LEN, -1))


def test_dlinear_with_revin_carries_a_level_shift_through():
    plain, normalised = models.DLinear(SEQ_LEN, PRED_LEN, CHANNELS), small_model("dlinear", revin=True)
    assert plain.revin is None and isinstance(normalised.revin, models.RevIN)
    with torch.no_grad():
        normalised.seasonal.weight.normal_()
        normalised.revin.weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
    x = batch()
    torch.testing.assert_close(normalised(x + 4.0), normalised(x) + 4.0, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(normalised(x), plain(x))
    # parameters: the plain model's plus RevIN's affine weight and bias
    assert len(list(normalised.parameters())) == len(list(plain.parameters())) + 2


def test_itransformer_treats_variates_as_tokens():
    """Attention over variates without a variate position: permuting the channels permutes the forecast and the
    features; and each channel's forecast depends on the others' series (unlike the channel-independent models)."""
    model = small_model("itransformer").eval()
    x = batch()
    order = [2, 0, 1]
    forecast, features = model.forward_features(x)
    swapped_forecast, swapped_features = model.forward_features(x[..., order])
    torch.testing.assert_close(swapped_forecast, forecast[..., order])
    torch.testing.assert_close(swapped_features, features[:, order])
    changed = x.clone()
    changed[..., 1] += torch.randn(BATCH, SEQ_LEN, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(model(changed)[..., 0], forecast[..., 0])


def test_itransformer_is_scale_and_shift_equivariant():
    """The per-series normalisation: a forecast of a * x + b is a * forecast(x) + b per channel (up to the eps
    under the std's square root)."""
    model = small_model("itransformer").eval()
    x = batch().double()
    model.double()
    scale, shift = torch.tensor([2.0, 0.5, 3.0], dtype=torch.float64), torch.tensor([1.0, -4.0, 0.25],
                                                                                    dtype=torch.float64)
    torch.testing.assert_close(model(x * scale + shift), model(x) * scale + shift, atol=1e-4, rtol=1e-4)


def test_itransformer_argument_errors():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        models.ITransformer(32, 4, 2, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="n_layers must be positive"):
        models.ITransformer(32, 4, 2, n_layers=0)


def test_models_are_channel_independent_where_stated():
    x = batch()
    without_affine_norm = {"mlp": {"input_norm": "none"}, "patchtst": {"revin": False}, "tcn": {"revin": False}}
    for name, options in without_affine_norm.items():
        model = small_model(name, **options).eval()
        swapped = model(x[..., [2, 1, 0]])
        torch.testing.assert_close(swapped, model(x)[..., [2, 1, 0]], msg=name)


def test_build_model_and_argument_errors():
    assert isinstance(models.build_model("tcn", 16, 4, 2, hidden=4), models.TCN)
    with pytest.raises(ValueError, match=r"unknown model 'lstm'; choices: dlinear, mlp, itransformer, patchtst, tcn"):
        models.build_model("lstm", 16, 4, 2)
    with pytest.raises(ValueError, match="seq_len must be positive"):
        models.DLinear(0, 4, 2)
    with pytest.raises(TypeError, match="channels must be an int"):
        models.MLPStudent(16, 4, 2.0)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        models.PatchTST(32, 4, 2, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="must be at least patch_len"):
        models.PatchTST(4, 4, 2, patch_len=16, stride=8)

