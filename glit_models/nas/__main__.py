"""``python -m glit_models.nas`` runs the search (the same as ``python -m glit_models.nas.search``)."""
import sys

from .search import main

sys.exit(main())
