"""How bytes become a model: one build path for every torch source.

* :mod:`.checkpoint` reads a file safely (safetensors, ``torch.load(weights_only=True)``,
  ``numpy.load(allow_pickle=False)``) and finds the state dict inside;
* :mod:`.surgery` changes a state dict or a model to fit a request (stem for ``in_chans``,
  head for ``num_classes``, lukemelas key names in :mod:`.lukemelas`);
* :mod:`.meta` builds models with parameters on the meta device (no random init first);
* :mod:`.fit` is the one fit policy every torch source uses (:func:`.fit.fit_state_dict`);
* :mod:`.report` holds :class:`~.report.LoadReport`, :mod:`.request` the normalised
  :class:`~.request.CreateRequest`.
"""
