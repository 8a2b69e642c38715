"""lukemelas' ``efficientnet_pytorch`` (0.7.1): EfficientNet-B0...B8 and L2.

Cards (:mod:`.cards`) come from ``efficientnet_pytorch.utils``: ``VALID_MODELS`` (architectures),
``url_map`` (standard/AutoAugment weights, b0-b7, tag ``imagenet``), ``url_map_advprop``
(AdvProp weights, b0-b8, tag ``advprop``) and ``efficientnet_params`` (native resolution).
``efficientnet-l2`` has no weights at all (an architecture-only card) and ``efficientnet-b8``
has only AdvProp weights (its default tag is ``advprop``).

Preprocessing (the repo's README and its ImageNet example,
https://github.com/lukemelas/EfficientNet-PyTorch/blob/master/examples/imagenet/main.py):
``Resize(res, BICUBIC)`` then ``CenterCrop(res)`` at the variant's native resolution, i.e.
``crop_pct=1.0``; ImageNet mean/std for the standard weights and ``x * 2 - 1`` (mean = std =
0.5) for AdvProp weights.

Upstream quirks and what omnizoo does:

* ``load_url`` with ``check_hash=False``: the 8-hex sha256 prefixes in the file names are never
  checked upstream; the cards record them and omnizoo's cache checks them.
* ``from_pretrained(in_channels=k)`` *re-initialises* the stem after loading; omnizoo keeps the
  pretrained stem and adapts it to ``in_chans`` (timm's rule: sum for 1 channel, repeat and
  rescale for more).
* ``num_classes != 1000`` drops ``_fc`` and builds a fresh head (as upstream).
* The memory-efficient swish (a custom autograd Function) cannot be exported to ONNX or
  scripted; omnizoo's models use the plain swish (``set_swish(memory_efficient=False)``), which
  gives identical outputs. Call ``model.set_swish(True)`` to save activation memory in training.
* ``features_only=True`` returns ``extract_endpoints`` feature maps: six levels (strides 2, 4, 8,
  16, 32, and the 1x1 head conv at 32), ``out_indices`` (0, 1, 2, 3, 4) by default, as timm's.
"""
