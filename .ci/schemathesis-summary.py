#!/usr/bin/env python3
"""Cases per operation and generation mode, and the statuses answered, from
Schemathesis NDJSON reports (.ci/schemathesis-check prints this table).

  schemathesis-summary.py REPORT.ndjson...
"""

import collections
import json
import sys


def main(paths: list[str]) -> int:
    cases: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in paths:
        with open(path, encoding="utf-8") as report:
            for line in report:
                event = json.loads(line).get("ScenarioFinished")
                if not event:
                    continue
                recorder = event.get("recorder") or {}
                label = recorder.get("label", "?")
                for case in (recorder.get("cases") or {}).values():
                    mode = case["value"].get("meta", {}).get("generation", {}).get("mode", "?")
                    cases[label][mode] += 1
                for interaction in (recorder.get("interactions") or {}).values():
                    response = interaction.get("response") or {}
                    if "status_code" in response:
                        statuses[label][response["status_code"]] += 1
    print(f"{'operation':<62} {'positive':>8} {'negative':>8}  statuses")
    for label in sorted(cases):
        shown = " ".join(f"{code}:{n}" for code, n in sorted(statuses[label].items()))
        print(f"{label:<62} {cases[label]['positive']:>8} {cases[label]['negative']:>8}  {shown}")
    total = sum(sum(c.values()) for c in cases.values())
    print(f"{'total':<62} {total:>17}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
