"""Command line: ``cartesian-irreps verify | generate | show`` (also ``python -m cartesian_irreps``)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict

from ._validate import NORMALIZATIONS
from .verify_budget import GROWTH, SAFE_LMAX


def _progress(done: int, total: int, label: str, start: float) -> None:
    """A one-line progress bar on a terminal; sparse lines when the output is a log file."""
    stream = sys.stderr
    width = 30
    filled = int(width * done / total)
    elapsed = time.perf_counter() - start
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {elapsed:6.1f}s {label}"
    if stream.isatty():
        stream.write("\r" + line[:100].ljust(100))
        if done == total:
            stream.write("\n")
    elif done == total or done % max(1, total // 10) == 0:
        stream.write(line + "\n")
    stream.flush()


def _group_name(obj: str) -> str:
    """``C(2,2,2) even unit`` -> ``C even unit``; ``P_3`` -> ``P_l``."""
    if obj.startswith("C("):
        return "C " + obj.split(") ", 1)[1]
    if obj.startswith("("):
        return "selection (l1,l2,l3)"
    if obj.startswith("Pi("):
        return "product basis"
    return obj.split("_")[0] + "_l"


def _print_table(rows: list[tuple[str, str, str, float]]) -> None:
    out = sys.stdout
    header = ("object", "check", "result", "seconds")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:<{widths[2]}}}  {{:>8}}"
    print(fmt.format(*header), file=out)
    print(fmt.format(*("-" * w for w in widths), "-" * 8), file=out)
    for obj, check, result, secs in rows:
        print(fmt.format(obj, check, result, f"{secs:.3f}"), file=out)


class _RankProgress:
    """Progress of ``verify`` on stderr: one permanent line per finished rank (with its time and the total
    elapsed), and on a terminal an in-place line for the check group that is running."""

    def __init__(self, lmax: int, start: float) -> None:
        self.lmax, self.start, self.stream = lmax, start, sys.stderr
        self.tty = self.stream.isatty()

    def group(self, done: int, total: int, label: str) -> None:
        if self.tty:
            elapsed = time.perf_counter() - self.start
            self.stream.write("\r" + f"verify: {done}/{total} groups {elapsed:7.1f}s {label}"[:100].ljust(100))
            self.stream.flush()

    def rank(self, l: int, checks: int, failed: int, seconds: float) -> None:
        elapsed = time.perf_counter() - self.start
        line = (
            f"verify: rank {l}/{self.lmax} done: {checks} checks, {failed} failed, "
            f"{seconds:.1f} s (elapsed {elapsed:.1f} s)"
        )
        self.stream.write(("\r" + line.ljust(100) if self.tty else line) + "\n")
        self.stream.flush()


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify_budget import check_lmax, estimated_seconds, format_duration

    try:
        check_lmax(args.lmax, args.force)
    except ValueError as exc:  # one clear line, no usage block: the arguments are well formed
        print(f"cartesian-irreps verify: error: {exc}", file=sys.stderr)
        return 2
    from . import verify

    start = time.perf_counter()
    reporter = None if args.quiet else _RankProgress(args.lmax, start)
    if reporter:
        estimate = format_duration(estimated_seconds(args.lmax))
        estimate = estimate if estimate.startswith("under") else "~" + estimate
        print(
            f"verify: lmax={args.lmax}, ranks 0..{args.lmax} in order (estimated {estimate} on the reference machine)",
            file=sys.stderr,
        )
    results = verify.run(
        args.lmax,
        layout=args.layout,
        progress=reporter.group if reporter else None,
        mutate=args.mutate,
        on_rank=reporter.rank if reporter else None,
    )
    total = time.perf_counter() - start
    if args.table == "full":
        rows = [
            (r.obj, r.check, ("pass" if r.ok else "FAIL") + (f" ({r.detail})" if r.detail else ""), r.seconds)
            for r in results
        ]
    else:
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for r in results:
            groups[(_group_name(r.obj), r.check)].append(r)
        rows = []
        for (obj, check), rs in groups.items():
            n_ok = sum(r.ok for r in rs)
            rows.append((f"{obj} [x{len(rs)}]", check, f"{n_ok}/{len(rs)} pass", sum(r.seconds for r in rs)))
    _print_table(rows)
    failures = [r for r in results if not r.ok]
    if failures and args.table != "full":
        print("\nFailures:")
        _print_table([(r.obj, r.check, f"FAIL {r.detail}".strip(), r.seconds) for r in failures])
    n = len(results)
    print(
        f"\n{n - len(failures)} passed, {len(failures)} failed  (lmax={args.lmax}, layout={args.layout}, {total:.1f} s)"
    )
    if args.json:
        payload = {
            "lmax": args.lmax,
            "layout": args.layout,
            "seconds": total,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "passed": n - len(failures),
            "failed": len(failures),
            "results": verify.as_dicts(results),
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1)
    return 1 if failures else 0


def cmd_show(args: argparse.Namespace) -> int:
    from .symbolic.formula import compact_entries, product_formula

    f = product_formula(args.l1, args.l2, args.l3)
    if args.format in ("text", "both"):
        print(f.plain)
    if args.format in ("latex", "both"):
        print("\nLaTeX:" if args.format == "both" else "", end="\n" if args.format == "both" else "")
        print(f.latex)
    if args.entries:
        print(f"\nNon-zero compact coefficients C[m1, m2, m3] ({args.normalization}):")
        for m1, m2, m3, v in compact_entries(args.l1, args.l2, args.l3, args.normalization):
            print(f"  C[{m1:+d}, {m2:+d}, {m3:+d}] = {v}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .generator import emit, strategy

    start = time.perf_counter()
    # an installed copy (site-packages) is not a source checkout: never regenerate into it
    installed = not (emit.GENERATED_DIR.parents[1] / "setup.py").is_file()
    if installed and (args.tune or not (args.check or args.output)):
        raise ValueError(
            f"{emit.GENERATED_DIR} belongs to an installed package: regenerate (or --tune) in a source checkout, "
            "or give --output DIR"
        )
    if args.tune:
        data = strategy.tune(
            args.lmax, progress=None if args.quiet else lambda d, t, label: _progress(d, t, label, start)
        )
        strategy.save_tuning(data)
        print(f"timed {len(data['timings'])} strategy/triple pairs -> {strategy.TUNING_PATH}")
    tuning = strategy.load_tuning()
    files = emit.sources(args.lmax, plans=lambda lmax: strategy.plans_source(lmax, tuning))
    directory = Path(args.output) if args.output else emit.GENERATED_DIR
    if args.check:
        problems = emit.stale(files, directory)
        for p in problems:
            print(p)
        if problems:
            fix = (
                "the installed copy is read-only: reinstall the package (pip install --force-reinstall .) "
                "from an up-to-date source checkout"
                if installed and not args.output
                else f"run `cartesian-irreps generate --lmax {args.lmax}`"
            )
            print(f"generated modules in {directory} are stale: {fix}")
            return 1
        print(f"generated modules in {directory} are up to date (lmax={args.lmax})")
        return 0
    changed = emit.write(files, directory)
    print(f"wrote {', '.join(changed) or 'nothing (up to date)'} in {directory} ({time.perf_counter() - start:.1f} s)")
    return 0


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _triple(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected l1,l2,l3, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected l1,l2,l3, got {text!r}")
    return parts  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cartesian-irreps", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="prove every property exactly up to --lmax")
    v.add_argument(
        "--lmax",
        type=_nonneg_int,
        default=4,
        help=f"largest rank (default 4; above {SAFE_LMAX} needs --force: time grows about as lmax^{GROWTH})",
    )
    v.add_argument(
        "--force", action="store_true", help=f"run an lmax above the safe bound {SAFE_LMAX} (hours to years)"
    )
    v.add_argument(
        "--layout",
        choices=("both", "compact"),
        default="both",
        help="'both' adds full-layout checks where l1+l2+l3 <= 12 (default)",
    )
    v.add_argument(
        "--table",
        choices=("summary", "full"),
        default="summary",
        help="one row per check kind (default) or one row per object and check",
    )
    v.add_argument("--json", metavar="PATH", help="write every result as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    v.add_argument(
        "--mutate",
        type=_triple,
        metavar="L1,L2,L3",
        help="corrupt one coefficient of this product first (demonstrates that verify catches it)",
    )
    v.set_defaults(func=cmd_verify)

    g = sub.add_parser("generate", help="write the generated kernel modules from the exact derivation")
    g.add_argument("--lmax", type=_nonneg_int, default=6, help="largest rank (default 6)")
    g.add_argument("--check", action="store_true", help="exit 1 if the committed modules are stale")
    g.add_argument("--tune", action="store_true", help="time every strategy first and rewrite tuning.json")
    g.add_argument("--output", metavar="DIR", help="write elsewhere (default: cartesian_irreps/generated)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    s = sub.add_parser("show", help="print the derived product l1 x l2 -> l3 as a formula")
    s.add_argument("l1", type=_nonneg_int)
    s.add_argument("l2", type=_nonneg_int)
    s.add_argument("l3", type=_nonneg_int)
    s.add_argument("--format", choices=("text", "latex", "both"), default="both")
    s.add_argument("--entries", action="store_true", help="also list the exact non-zero compact coefficients")
    s.add_argument("--normalization", choices=NORMALIZATIONS, default="unit")
    s.set_defaults(func=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    return 2


if __name__ == "__main__":
    sys.exit(main())
