"""Probe a bundle from Python and list where it beats a random init by more than the seeds' spread.

    python examples/probe_api.py BUNDLE [SHARDS]
"""

import sys

from ssltk.probe import run_probe


def main(bundle: str, data: str | None = None) -> None:
    result = run_probe(bundle, data, seeds=(0, 1), max_frames=300)
    for row in result["rows"]:
        delta = row["delta_vs_random_init"]
        if row["not_observable"] or delta is None:
            continue
        gain = delta if row["higher_is_better"] else -delta
        verdict = "better" if gain > 0 and not row["within_noise"] else "no clear gain"
        print(f"{row['probe']:<28} {row['metric']:<10} {verdict:<14} delta {delta:+.3f}")
    for skipped in result["skipped"]:
        print(f"{skipped['probe']}: {skipped['reason']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
