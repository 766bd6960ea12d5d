"""``pipeline=mechanic``: the live fine-tuning loop. ``run`` is the cycle over the roster,
``coin`` one champion's fine-tune and decision, ``drift`` the feature and cluster drift."""
