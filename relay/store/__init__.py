"""Redis state: the atomic scripts and the typed accessors built on them."""
