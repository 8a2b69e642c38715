"""``layer_summary``: a torchinfo-like table of a model's layers, from one forward pass.

Forward hooks record each module's output shape while a zero batch runs through the model
(in eval mode, under ``torch.inference_mode``; the model's train/eval state is restored).
Rows follow execution order; modules deeper than ``depth`` are folded into their ancestor,
whose parameter count includes them. A module run several times (shared blocks) is listed
once, with the number of calls.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError

__all__ = ["layer_summary"]


def _shape_of(out: Any) -> str:
    import torch

    if isinstance(out, torch.Tensor):
        return str(list(out.shape))
    if isinstance(out, (tuple, list)) and out:
        return " ".join(_shape_of(o) for o in out[:3]) + (" ..." if len(out) > 3 else "")
    if isinstance(out, dict) and out:
        return " ".join(f"{k}:{_shape_of(v)}" for k, v in list(out.items())[:3])
    return "-"


def _count(n: int) -> str:
    return f"{n:,}"


def layer_summary(model: Any, input_size: Any = None, *, depth: int = 3, device: Any = None) -> str:
    """A table of ``(layer, type, output shape, params, trainable)`` with totals.

    ``input_size``: ``(C, H, W)`` or ``(N, C, H, W)``; default: the model card's input size, or
    (3, 224, 224). ``depth``: how many levels of nested modules get their own row.
    """
    import torch

    if input_size is None:
        card = getattr(model, "omnizoo_card", None)
        input_size = tuple(card.data.input_size) if card is not None else (3, 224, 224)
    if isinstance(input_size, int):
        input_size = (3, input_size, input_size)
    shape = tuple(int(v) for v in input_size)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ConfigurationError(f"input_size must be (C, H, W) or (N, C, H, W), got {input_size}")
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"layer_summary needs an nn.Module, got {type(model).__name__}")

    rows: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue
        level = name.count(".") + 1
        if level > depth:
            continue

        def hook(mod: Any, args: Any, out: Any, name: str = name, level: int = level) -> None:
            row = rows.get(name)
            if row is None:
                params = list(mod.parameters())
                total = sum(p.numel() for p in params)
                trainable = sum(p.numel() for p in params if p.requires_grad)
                rows[name] = {
                    "level": level,
                    "type": type(mod).__name__,
                    "shape": _shape_of(out),
                    "params": total,
                    "trainable": trainable,
                    "calls": 1,
                }
                order.append(name)
            else:
                row["calls"] += 1

        hooks.append(module.register_forward_hook(hook))

    was_training = model.training
    try:
        param = next(model.parameters(), None)
        dev = device or (param.device if param is not None else "cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        x = torch.zeros(shape, device=dev, dtype=dtype)
        model.eval()
        with torch.inference_mode():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    # Container rows are registered after their children (hooks fire on exit): sort each
    # container before its first child, keeping execution order otherwise.
    position = {name: float(i) for i, name in enumerate(order)}
    for name in order:
        children = [n for n in order if n.startswith(name + ".")]
        if children:
            position[name] = min(position[c] for c in children) - 0.5
    order.sort(key=lambda n: position[n])

    header = ("Layer", "Type", "Output shape", "Params", "Trainable")
    table = []
    for name in order:
        row = rows[name]
        indent = "  " * (row["level"] - 1)
        label = indent + name.rsplit(".", 1)[-1] if row["level"] > 1 else name
        calls = f" (x{row['calls']})" if row["calls"] > 1 else ""
        if row["params"] == 0:
            trainable = "-"
        elif row["trainable"] == row["params"]:
            trainable = "yes"
        elif row["trainable"] == 0:
            trainable = "no"
        else:
            trainable = "partial"
        table.append((label + calls, row["type"], row["shape"], _count(row["params"]), trainable))
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(5)]

    def fmt(r: tuple[str, ...]) -> str:
        cells = [
            r[0].ljust(widths[0]),
            r[1].ljust(widths[1]),
            r[2].ljust(widths[2]),
            r[3].rjust(widths[3]),
            r[4].ljust(widths[4]),
        ]
        return "  ".join(cells).rstrip()

    rule = "=" * len(fmt(header))
    total = sum(p.numel() for p in model.parameters())
    trainable_total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())
    lines = [rule, fmt(header), rule, *(fmt(r) for r in table), rule]
    lines.append(f"Input shape: {list(shape)}    Output shape: {_shape_of(out)}")
    lines.append(f"Total params: {_count(total)}")
    lines.append(f"Trainable params: {_count(trainable_total)}")
    lines.append(f"Non-trainable params: {_count(total - trainable_total)}")
    size_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    lines.append(f"Buffers: {_count(buffers)}    Params size: {size_mb:.2f} MB")
    lines.append(rule)
    return "\n".join(lines)
