"""Hashes recorded on main of outputs that must not change by accident, one per kind of
machine.

The default run trains with torch and the synthetic market draws and compounds with numpy,
and the last bits of a float depend on the kernels a machine's instruction set selects
(numpy's exp and log among them) and on the packages' versions; a different last bit can
round differently at the sixth decimal, or change a trade. On 2026-12-07 the same commit
(f834462) gave one set of hashes on the machines of the earlier sessions and CI, and another
on an AMD EPYC with AVX2 only, in a freshly installed environment (which of the two, the
CPU or the packages, made the difference was not separated). A code change that alters
these outputs changes every one of their hashes, so a digest outside the set fails. A
change made on purpose updates every hash it can measure in the same commit (one it cannot
measure is removed, not kept stale).
"""

EARLIER = "CI and the development machines to 2026-12-07"
AVX2 = "AMD EPYC, AVX2 only, fresh environment, 2026-12-07"

# ``python train.py``'s results.csv
DEFAULT_RESULTS_MD5 = {
    "4a2fed2ed754ef4cec8e1a306f0c8caa": EARLIER,
    "6764426b9acc48e3991c642a53aae1f4": AVX2,
}
# ``tests/test_levels.py``: a seed's default synthetic panel, rounded to 6 decimals
DEFAULT_MARKET_MD5 = {
    "9eb998b2bfb9f936f7f7897464b0d06f": EARLIER,  # main before data.levels (adac126)
    "21147f2f7b51dd0b54fc90df016a1a2e": AVX2,
}
