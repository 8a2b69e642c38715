"""timm: every registered architecture and every tag of its registry (weights or not), from
timm's own ``pretrained_cfg``; nothing is copied by hand.

``cards`` builds the cards; ``build`` runs ``timm.create_model`` with parameters on the meta
device and timm's ``load_pretrained`` replaced by omnizoo's fit policy; ``hub`` reads timm's
``hf-hub:`` / ``local-dir:`` names and ``pretrained_cfg``/``pretrained_cfg_overlay`` sources.
"""
