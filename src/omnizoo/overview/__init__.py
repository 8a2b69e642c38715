"""omnizoo.overview (internal; the public API is omnizoo.__all__): views of the whole zoo made
from the card indexes: the docs tables (:mod:`.tables`, ``python -m omnizoo.overview.tables``)
and the zoo plot (:mod:`.plot`)."""
