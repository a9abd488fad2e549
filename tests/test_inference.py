"""The one inference loop: every batch, eval mode, no gradients, device handling."""

from __future__ import annotations

import torch
from torch import nn

from histoprog.inference import batch_slices, run_model

CPU = torch.device("cpu")


def test_batch_slices_cover_every_row_once() -> None:
    assert list(batch_slices(10, 4)) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert list(batch_slices(0, 4)) == []


def test_run_model_gives_every_batch_its_eval_mode_output() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))  # dropout is off in eval mode only
    x = torch.randn(10, 4)
    seen: list[tuple[slice, torch.Tensor, bool]] = []

    def consume(rows: slice, out: torch.Tensor) -> None:
        seen.append((rows, out, torch.is_inference_mode_enabled()))

    run_model(model, batch_slices(10, 4), lambda rows: x[rows], consume, CPU)
    assert not model.training
    assert [rows for rows, _, _ in seen] == list(batch_slices(10, 4))
    assert all(inference for _, _, inference in seen)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(torch.cat([out for _, out, _ in seen]), expected, atol=1e-6, rtol=0)
    assert not torch.is_inference_mode_enabled()


def test_mixed_precision_changes_nothing_on_the_cpu() -> None:
    torch.manual_seed(1)
    model = nn.Conv2d(3, 2, 3)
    x = torch.randn(2, 3, 8, 8)
    outs: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for amp in (True, False):
        run_model(model, [x], lambda b: b, lambda _, y, amp=amp: outs[amp].append(y), CPU,
                  mixed_precision=amp)  # fmt: skip
    assert outs[True][0].dtype == torch.float32
    assert torch.equal(outs[True][0], outs[False][0])
