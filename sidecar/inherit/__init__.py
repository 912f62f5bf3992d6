"""Building blocks of the `inherit` processor: the ancestor cache, the hold, regrouping."""
