"""The ONNX model zoo (github.com/onnx/models): its 113 ImageNet classifiers.

* **The manifest.** ``ONNX_HUB_MANIFEST.json`` at the last commit that changed it (ddbbd127,
  2023-12-26; ``settings.onnx_manifest_url``) is fetched once through the verified cache and
  checked against :data:`MANIFEST_SHA256`; listing works offline after that. Without network
  and without a cached copy the source lists nothing (``list_models`` keeps working) and
  :func:`manifest_problem` says how to get it: run ``omnizoo download`` on the manifest URL
  (or :func:`fetch_manifest`), or point ``OMNIZOO_ONNX_MANIFEST_URL`` at a mirror or at a local
  copy of the file (:mod:`.manifest`) (a path or ``file://`` URL; its sha256 must match too).
* **Names.** ``onnx:<file stem>`` as the zoo spells the file (``onnx:resnet50-v1-7``,
  ``onnx:bvlcalexnet-12-int8``, ``onnx:squeezenet1.0-12``). The tag is the dataset:
  ``imagenet`` (``ilsvrc13_det`` for the 200-class R-CNN).
* **Downloads.** The zoo stopped serving Git-LFS downloads on 2025-07-01, so each file's URLs
  are a chain: the Hugging Face copy (onnxmodelzoo/legacy_models, same relative paths) first,
  then the original LFS media host. Every file has a full sha256 and size in the manifest;
  OMNIZOO_MIRRORS still goes first.
* **Preprocessing** per family, and which entries are classifiers: :mod:`.families`.
* **Models** are :class:`~.model.OnnxModel` (onnxruntime): NCHW float tensor
  in, ``card.output`` ("logits" or "probabilities") out. Opset < 7 entries are listed, marked
  as not loadable by onnxruntime, and refused with a :class:`BackendError` naming a loadable
  opset of the same model.
"""
