"""omnizoo.values (internal; the public API is omnizoo.__all__): the plain data every layer
passes around and nothing else. ``ModelCard``/``WeightsFile`` (:mod:`.card`), the name grammar
(:mod:`.names`), ``DataConfig`` (:mod:`.data_config`), a card from a file's fields
(:mod:`.card_fields`) and a model's lineage (:mod:`.lineage`). The bottom layer above
``errors``/``settings``/``schema``: it imports nothing else of omnizoo, and never torch."""
