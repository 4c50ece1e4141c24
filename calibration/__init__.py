"""Everything about data: sources, the preprocessing contract, splits, checks, adapters."""
