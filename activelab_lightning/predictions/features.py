"""The model's penultimate features, captured in the same forward pass as its probabilities.

The cross-fitted heads (:mod:`~activelab_lightning.predictions.crossfit`) are fitted on the input of
the model's last ``nn.Linear`` (or a named layer). A forward hook records it while the usual
``predict_fn`` runs, so the labeled-pool pass yields probabilities and features together, and one
trunk pass over the unlabeled pool feeds every head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from activelab_lightning.predictions.inference import _check_output

if TYPE_CHECKING:
    from activelab_lightning.predictions.crossfit import CrossFitHeads

__all__ = ["capture_inputs", "find_head", "heads_predict_fn", "with_features_predict_fn"]


def find_head(module: nn.Module, name: str | None = None) -> nn.Module | None:
    """The layer whose input is the model's penultimate representation.

    Args:
        module: The model.
        name: Dotted name of the layer in ``module.named_modules()`` (e.g. ``"net.4"`` or
            ``"classifier"``); default: the last ``nn.Linear`` registered in ``module`` (for the
            usual ``trunk → Linear`` classifiers, the output layer).

    Returns:
        The layer, or ``None`` when ``name`` is None and the model has no ``nn.Linear``.

    Raises:
        ValueError: ``name`` is not a submodule of ``module``.

    Example::

        >>> find_head(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
        Linear(in_features=8, out_features=3, bias=True)
    """
    if name is not None:
        modules = dict(module.named_modules())
        if name not in modules:
            linear = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(
                f"feature_layer={name!r} is not a submodule of {type(module).__name__}; its nn.Linear layers "
                f"are {linear[:10]}. Pass one of those (or any name from model.named_modules())."
            )
        return modules[name]
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


@contextlib.contextmanager
def capture_inputs(layer: nn.Module) -> Iterator[list[Tensor]]:
    """Record the first positional input of every ``layer`` call while the context is open.

    Yields:
        A list that receives one detached tensor per call (cleared by the caller as it likes).

    Example::

        >>> lin = nn.Linear(3, 2)
        >>> with capture_inputs(lin) as seen:
        ...     _ = lin(torch.ones(5, 3))
        >>> seen[0].shape
        torch.Size([5, 3])
    """
    seen: list[Tensor] = []

    def hook(_module: nn.Module, args: tuple, _output: object) -> None:
        if args and isinstance(args[0], Tensor):
            seen.append(args[0].detach())

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def _captured_features(seen: list[Tensor], layer: nn.Module, batch: int) -> Tensor:
    if not seen:
        raise ValueError(
            f"The feature layer {type(layer).__name__} was not called during the forward pass, so there are no "
            f"penultimate features for out_of_sample='crossfit'. Pass feature_layer=<name of the layer whose "
            f"input is the representation> or out_of_sample='in_sample'."
        )
    f = seen[-1]
    if f.ndim != 2 or f.shape[0] != batch:
        raise ValueError(
            f"The input of the feature layer {type(layer).__name__} has shape {tuple(f.shape)} for a batch of "
            f"{batch} examples; out_of_sample='crossfit' needs one (B, d) feature row per example. Pass "
            f"feature_layer=<name of the classifier layer> or out_of_sample='in_sample'."
        )
    return f


def _forward_with_features(
    base: Callable[[nn.Module, Any], Tensor],
    layer: nn.Module,
    module: nn.Module,
    x: Any,
    *,
    check: Callable[..., Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """One forward pass: ``base``'s output and the ``(B, d)`` input of ``layer`` captured on the way."""
    with capture_inputs(layer) as seen:
        probs = base(module, x)
    if check is not None and (not isinstance(probs, Tensor) or probs.ndim != 2):  # the usual "(B, K)" error
        check(
            probs,
            probs.shape[0] if isinstance(probs, Tensor) and probs.ndim else 0,
            None,
            "predict_fn / forward",
            module,
        )
    return probs, _captured_features(seen, layer, probs.shape[0])


def with_features_predict_fn(
    base: Callable[[nn.Module, Any], Tensor], layer: nn.Module, num_classes: int
) -> Callable[[nn.Module, Any], Tensor]:
    """A ``predict_fn`` returning ``(B, K + d)``: ``base``'s probabilities, then ``layer``'s input.

    One forward pass gives both; split the columns after gathering (``validate=False`` in the
    prediction loop, since the rows are not probabilities).
    """

    def predict(module: nn.Module, x: Any) -> Tensor:
        probs, feats = _forward_with_features(base, layer, module, x, check=_check_output)
        if probs.shape[1] != num_classes:
            raise ValueError(
                f"Probabilities for the labeled pool must have shape (B, {num_classes}) (one column per class of "
                f"the store), but got shape {tuple(probs.shape)}. If the module does not return (B, K) logits, "
                f"pass `predict_fn=` (or define `predict_proba`)."
            )
        dtype = torch.promote_types(probs.dtype, feats.dtype)
        return torch.cat([probs.to(dtype), feats.to(probs.device, dtype)], dim=1)

    return predict


def heads_predict_fn(
    base: Callable[[nn.Module, Any], Tensor], layer: nn.Module, heads: CrossFitHeads
) -> Callable[[nn.Module, Any], Tensor]:
    """A ``predict_fn`` returning ``(B, P * K)``: every head's probabilities from one trunk pass.

    Reshape a ``(b, P * K)`` result with ``probs.view(b, P, K).transpose(0, 1)`` to ``(P, b, K)``.
    """

    def predict(module: nn.Module, x: Any) -> Tensor:
        _, feats = _forward_with_features(base, layer, module, x)
        out = heads.predict(feats)  # (P, B, K)
        return out.transpose(0, 1).reshape(out.shape[1], -1)

    return predict
