"""Cadene's ``pretrainedmodels`` (0.7.4): 45 architectures, 49 sets of weights.

Cards (:mod:`.cards`) come from ``pretrainedmodels.pretrained_settings`` (one card per
settings entry); the builders (:mod:`.upstream`, :mod:`.build`) come from
``pretrainedmodels.__dict__[arch]``. Upstream quirks and what omnizoo does:

* **Tag spelling.** Settings keys contain ``+``, which the name grammar does not allow, so
  ``imagenet+background`` is spelled ``imagenet_background`` and ``imagenet+5k`` is spelled
  ``imagenet_5k`` (:data:`TAG_SPELLING`). ``cadene:inceptionv4.imagenet_background`` is the
  1001-way head (index 0 = background, ``label_offset=1``); ``cadene:inceptionv4.imagenet`` is
  the same file with rows ``[1:]`` of the head kept, as upstream does.
* **Hashes.** Upstream loads with ``model_zoo.load_url`` (``check_hash=False``) so the 8-9 hex
  sha256 prefixes in the file names are never checked; the cards record them as
  ``WeightsFile.hash_prefix`` and omnizoo's cache verifies them. 32 files live on plain-http
  ``data.lip6.fr``; four of them are re-hosted (same name, same bytes) on timm's GitHub release
  ``v0.1-cadene`` and that copy is listed as a fallback URL.
* **``pretrained=False``** raises ``KeyError`` in 32 builders; omnizoo always builds with
  ``pretrained=None`` and loads verified bytes itself.
* **Defaults that fail.** ``nasnetalarge()``/``pnasnet5large()``/``nasnetamobile()`` default to
  ``num_classes=1001`` (``nasnetalarge()`` then fails its own assert); omnizoo always passes the
  card's ``num_classes``.
* **torchvision's deprecated ``pretrained=``.** The 21 torchvision wrappers call
  ``models.X(pretrained=False)``; omnizoo builds them through a shim that calls
  ``models.X(weights=None)`` instead (no deprecation warnings; keeps working once torchvision
  drops ``pretrained=``).
* **SqueezeNet** returns ``[N, 1000, 1, 1]`` upstream; omnizoo's returns ``[N, 1000]``.
* **InceptionV3** returns ``(logits, aux)`` in train mode upstream; omnizoo's returns logits in
  both modes (the aux head is kept and loaded; set ``model.aux_logits = True`` to get it back).
* Checkpoint key formats: the files of the torchvision wrappers (and xception's) use the key
  names from before upstream's renames (``fc.*``, ``classifier.6.*``, DenseNet's legacy
  ``norm.1``); the built models rename them (``last_linear.*``, ``_features.*``). Both
  spellings load.
"""
