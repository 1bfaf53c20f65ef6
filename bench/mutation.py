"""The mutation pass over the pure policy modules: how many deliberate slips do the fast unit
tests catch?

Runs mutmut (configuration in pyproject.toml `[tool.mutmut]`: relay/vendors/polling.py, signing.py,
ssrf.py, ids.py, budget.py and config.py, against tests/test_policy_units.py, test_signing.py
and test_ssrf.py), then prints the kill rate and each surviving mutant, marking the ones judged
equivalent (no test can tell them from the original; the reasons are in EQUIVALENT below).

    ./run bench mutation            # a full run (about 2 minutes on the 2-core reference box)
    ./run bench mutation --show     # also print the diff of every unexplained survivor

Exit status 1 when the kill rate, counting equivalent mutants as not killable, is under
--min (default 90). Not part of the default test run: it rebuilds `mutants/` every time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = [sys.executable, "-m", "mutmut"]

#: Survivors that behave exactly like the original for every input, with the reason.
EQUIVALENT: dict[str, str] = {
    "relay.ids.x__token__mutmut_7": (
        'rstrip("XX=XX") strips X too, but 12 bytes in base32 end in A or Q, never X'
    ),
    "relay.ids.x_event_id__mutmut_14": (
        'rstrip("XX=XX"): 16 bytes in base32 end in one of A E I M Q U Y 4, never X'
    ),
    "relay.config.x_parse_api_keys__mutmut_36": (
        'replace("-", "XXXX"): X is alphanumeric, so isalnum() answers the same'
    ),
    "relay.config.x_parse_api_keys__mutmut_38": (
        'replace("_", "XXXX"): X is alphanumeric, so isalnum() answers the same'
    ),
    "relay.config.x__describe__mutmut_14": (
        "pydantic-settings reports a field by its alias, which is never a key of "
        "model_fields: the alias lookup always falls through to field.upper()"
    ),
    "relay.config.x__describe__mutmut_15": "as _14: the lookup never finds a field",
    "relay.config.x__describe__mutmut_18": "as _14: the alias branch is never taken",
    "relay.config.x__describe__mutmut_29": 'pydantic errors always carry "msg"',
    "relay.config.x__describe__mutmut_31": 'pydantic errors always carry "msg"',
    "relay.config.x__describe__mutmut_34": 'pydantic errors always carry "msg"',
    "relay.config.x__describe__mutmut_35": 'pydantic errors always carry "msg"',
    "relay.vendors.polling.x_next_interval__mutmut_2": (
        "current < 0 instead of <= 0: at 0 the other branch also answers max(low, 0) = low"
    ),
    "relay.delivery.signing.x_new_secret__mutmut_4": (
        "secrets.token_bytes(None) draws the default 32 bytes, which is SECRET_BYTES"
    ),
    "relay.delivery.signing.x_new_secret__mutmut_6": 'codec names are case-insensitive: "ASCII"',
    "relay.delivery.signing.x_sign__mutmut_15": 'codec names are case-insensitive: "ASCII"',
    "relay.delivery.signing.x_verify__mutmut_56": (
        "rpartition: a candidate with two commas fails either way (the version holds a comma, "
        "or the base64 does and strict decoding refuses it)"
    ),
    "relay.delivery.ssrf.x__check_addresses__mutmut_7": 'split("%")[0] is split("%", 1)[0]',
    "relay.delivery.ssrf.x__check_addresses__mutmut_10": 'split("%", 2)[0] is split("%", 1)[0]',
    "relay.delivery.ssrf.x__getaddrinfo__mutmut_4": (
        "the port only changes the sockaddr's port, which is discarded; the addresses are equal"
    ),
    "relay.delivery.ssrf.x__getaddrinfo__mutmut_8": (
        "without type=SOCK_STREAM each address comes once per socket type; "
        "dict.fromkeys removes the repeats"
    ),
}

_LINE = re.compile(r"^\s*(\S+): (\S.*)$")


def results() -> dict[str, str]:
    out = subprocess.run(
        [*MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    found = {}
    for line in out.splitlines():
        match = _LINE.match(line)
        if match and "__mutmut_" in match.group(1):
            found[match.group(1)] = match.group(2).strip()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min", type=float, default=90.0, help="required kill rate, percent")
    parser.add_argument("--show", action="store_true", help="print unexplained survivors' diffs")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from a previous run")
    args = parser.parse_args()

    if not args.keep:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    started = time.monotonic()
    run = subprocess.run([*MUTMUT, "run"], cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    found = results()
    if not found:
        print(run.stdout[-2000:], run.stderr[-2000:], sep="\n")
        print("mutmut produced no results", file=sys.stderr)
        return 2
    killed = [m for m, s in found.items() if s in ("killed", "timeout")]
    survived = [m for m, s in found.items() if s not in ("killed", "timeout")]
    equivalent = [m for m in survived if m in EQUIVALENT]
    unexplained = [m for m in survived if m not in EQUIVALENT]
    total = len(found)
    rate = 100.0 * len(killed) / total
    killable = total - len(equivalent)
    rate_killable = 100.0 * len(killed) / killable if killable else 100.0
    print(
        f"mutants: {total}, killed: {len(killed)}, survived: {len(survived)} "
        f"({len(equivalent)} judged equivalent), {elapsed:.0f} s"
    )
    print(f"kill rate: {rate:.1f} % of all mutants, {rate_killable:.1f} % of non-equivalent ones")
    for mutant in equivalent:
        print(f"  equivalent  {mutant}: {EQUIVALENT[mutant]}")
    for mutant in unexplained:
        print(f"  SURVIVED    {mutant} ({found[mutant]})")
        if args.show:
            diff = subprocess.run(
                [*MUTMUT, "show", mutant], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout
            print("\n".join(f"      {line}" for line in diff.splitlines() if line[:1] in "+-"))
    stale = sorted(set(EQUIVALENT) - set(survived))
    if stale:
        print(f"  (listed as equivalent but now killed or gone: {', '.join(stale)})")
    return 0 if rate_killable >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
