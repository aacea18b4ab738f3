"""Probe a bundle from Python and list where it beats every baseline by more than the seeds' spread.

    python examples/probe_api.py BUNDLE [SHARDS]
"""

import sys

from ssltk.probe import run_probe


def main(bundle: str, data: str | None = None) -> None:
    result = run_probe(bundle, data, seeds=(0, 1), max_frames=300)
    for row in result["rows"]:
        if row["not_observable"] or row["delta_vs_best"] is None:
            continue
        verdict = {"beats": "beats all baselines", "behind": "behind"}.get(row["verdict"], "within noise")
        print(f"{row['probe']:<28} {row['metric']:<10} {verdict:<20} vs {row['best_baseline']:<12} "
              f"delta {row['delta_vs_best']:+.3f}")
    for skipped in result["skipped"]:
        print(f"{skipped['probe']}: {skipped['reason']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
