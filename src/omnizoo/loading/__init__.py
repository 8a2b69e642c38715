"""How bytes become a model: one build path for every torch source.

* :mod:`.checkpoint` reads a file safely (safetensors, ``torch.load(weights_only=True)``,
  ``numpy.load(allow_pickle=False)``) and finds the state dict inside;
* :mod:`.build` is the one build skeleton (:func:`.build.build_model`): the meta / random /
  weights branches, the head size, the fit plan; a source supplies only an ``Upstream``;
* :mod:`.heads` finds a head, tells its width, makes a new one and sets it, for every layer;
* :mod:`.surgery` changes a state dict or a stem to fit a request (``in_chans``; lukemelas key
  names in :mod:`.lukemelas`);
* :mod:`.meta` builds models with parameters on the meta device (no random init first);
* :mod:`.fit` is the one fit policy (:func:`.fit.fit_state_dict` with a :class:`.fit.FitPlan`);
* :mod:`.report` holds :class:`~.report.LoadReport`, :mod:`.request` the normalised
  :class:`~.request.CreateRequest`.
"""
