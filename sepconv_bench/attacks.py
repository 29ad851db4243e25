"""``sepconv-bench --attacks``: every hostile workload against a real service, in one table.

sepconv-bench --attacks                                # the repository's models/, every attack
sepconv-bench --attacks --model-dir DIR --duration 10 --json attacks.json
sepconv-bench --attacks --only decode,comparisons

Each attack gets a fresh ``sepconv-serve`` process (one worker, so the figures are that
process's CPU and memory) on the model directory, runs for about ``--duration`` seconds and
reports the figures of the functions in ``decode_attacks``, ``comparison_attacks`` and, once it
exists, ``head_attacks``. An attack whose module or function is missing is reported "not
available" rather than failing the run, so the runner picks new attacks up as they land.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sepconv_bench.server import ServiceProcess, running_service  # noqa: E402

HEAD_ATTACKS_MODULE = "sepconv_bench.head_attacks"
DEFAULT_DURATION_S = 20.0
DEFAULT_SLOWLORIS_CONNECTIONS = 3000
# Eight uploads at once: the burst the decode budget is sized against.
DECODE_BURST = 8
# A flood of comparisons: one running and every queue slot taken (compare_max_waiting is 4).
COMPARE_CLIENTS = 5


@dataclass(frozen=True)
class AttackOptions:
    duration_s: float = DEFAULT_DURATION_S
    slowloris_connections: int = DEFAULT_SLOWLORIS_CONNECTIONS


Figures = dict[str, Any]
# An attack against a started service: its headline figures (label -> value) and the full
# answer of the function it called, for the JSON.
Runner = Callable[[ServiceProcess, AttackOptions], tuple[Figures, Any]]


@dataclass(frozen=True)
class Attack:
    name: str
    what: str
    # The runner, or why it is not available (resolved before any service is started).
    resolve: Callable[[], Runner | str]
    # Settings of the service it runs against, beyond the runner's defaults.
    service_env: Callable[[AttackOptions], dict[str, str]] = lambda options: {}


@dataclass
class Outcome:
    name: str
    what: str
    status: str  # "ok", "not available" or "failed"
    seconds: float = 0.0
    figures: Figures = field(default_factory=dict)
    reason: str | None = None
    service_env: dict[str, str] = field(default_factory=dict)
    details: Any = None


def plain(value: Any) -> Any:
    """A function's answer as JSON-ready data: ``as_dict()`` where it has one, else fields."""
    if hasattr(value, "as_dict") and callable(value.as_dict):
        return plain(value.as_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bytes):  # a raw answer a client read: shown, not kept exactly
        return value.decode("latin-1")
    return value


# Decoder exhaustion


def _decode(service: ServiceProcess, options: AttackOptions) -> tuple[Figures, Any]:
    from sepconv_bench.decode_attacks import WORST_CASES, decode_attack_figures

    # The settling wait is the one part of the run that is ours to choose; the decodes take
    # what they take (each bounded by the service's own limits and the client timeout).
    settle_s = min(30.0, max(0.5, options.duration_s / len(WORST_CASES)))
    figures = decode_attack_figures(
        service.url,
        service.pid,
        burst=DECODE_BURST,
        settle_s=settle_s,
        timeout_s=max(60.0, 3 * options.duration_s),
    )
    jpegs = [f for f in figures if f.case.startswith("JPEG")] or figures
    worst_jpeg = max(jpegs, key=lambda f: f.cpu_s)
    peak = max(figures, key=lambda f: f.peak_rss_mib)
    settled = max(figures, key=lambda f: f.settled_rss_mib)
    answer = f"{worst_jpeg.status}" + (f" {worst_jpeg.code}" if worst_jpeg.code else "")
    summary: Figures = {
        "worst JPEG": worst_jpeg.case,
        "worst JPEG: answer": answer,
        "worst JPEG: decode CPU (s)": worst_jpeg.cpu_s,
        "worst JPEG: wall (s)": worst_jpeg.seconds,
        "RSS before the first upload (MiB)": figures[0].idle_rss_mib,
        f"peak RSS, {DECODE_BURST} worst-case uploads at once (MiB)": peak.peak_rss_mib,
        "peak RSS: case": peak.case,
        f"settled RSS, {settle_s:g} s after a burst, highest (MiB)": settled.settled_rss_mib,
        "burst answers": _counts(status for f in figures for status in f.burst_statuses),
    }
    return summary, [f.as_dict() for f in figures]


def _counts(statuses: Any) -> str:
    counted: dict[int, int] = {}
    for status in statuses:
        counted[status] = counted.get(status, 0) + 1
    return ", ".join(f"{count}x{status}" for status, count in sorted(counted.items()))


# Comparison floods


def _comparisons(service: ServiceProcess, options: AttackOptions) -> tuple[Figures, Any]:
    from sepconv_bench.comparison_attacks import predict_during_comparisons

    # A sequential /predict takes a few to a few tens of milliseconds with the 10 ms pause:
    # about 20 a second, so the flooded series lasts about the duration.
    predicts = max(5, min(2000, int(options.duration_s * 20)))
    result = predict_during_comparisons(
        service.url,
        predicts=predicts,
        compare_clients=COMPARE_CLIENTS,
        settle_s=min(0.5, options.duration_s / 4),
        compare_timeout_s=options.duration_s + 30.0,
    )
    summary: Figures = {
        "/predict idle p50 (ms)": result.idle.p50_ms,
        "/predict idle p99 (ms)": result.idle.p99_ms,
        f"/predict p50 during {COMPARE_CLIENTS} comparison clients (ms)": result.during.p50_ms,
        f"/predict p99 during {COMPARE_CLIENTS} comparison clients (ms)": result.during.p99_ms,
        "p50 ratio (during / idle)": result.p50_ratio,
        "p99 ratio (during / idle)": result.p99_ratio,
        "/predict non-200 during": result.during.non_200,
        "/compare answers": _counts(
            status for status, n in result.compare_statuses.items() for _ in range(n)
        ),
    }
    return summary, result.as_dict()


def _compare_env(options: AttackOptions) -> dict[str, str]:
    # One comparison runs at most this long, so the flood's last answer, which the attack
    # waits for, comes within the attack's duration (the default budget is 30 s).
    return {"SEPCONV_COMPARE_BUDGET_S": f"{max(1.0, options.duration_s):g}"}


# Header and connection exhaustion: sepconv_bench.head_attacks, found by name when it lands

# Parameters the runner knows how to fill, by name.
_DURATION_PARAMETERS = ("duration_s", "duration", "seconds", "hold_s", "run_s", "time_s")
_CONNECTION_PARAMETERS = ("connections", "slowloris_connections", "clients")


def _head_module() -> ModuleType | str:
    try:
        return importlib.import_module(HEAD_ATTACKS_MODULE)
    except ImportError as error:
        return f"{HEAD_ATTACKS_MODULE} is not importable ({error})"


def _head_function(
    wanted: Callable[[str], bool], description: str
) -> Callable[[], Callable[..., Any] | str]:
    """The public function of ``head_attacks`` whose name ``wanted`` accepts, or why none."""

    def find() -> Callable[..., Any] | str:
        module = _head_module()
        if isinstance(module, str):
            return module
        names = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and value.__module__ == module.__name__
            and not name.startswith("_")
            and wanted(name)
        )
        if not names:
            return f"{HEAD_ATTACKS_MODULE} has no function for {description}"
        function: Callable[..., Any] = getattr(module, names[0])
        return function

    return find


def _call(
    function: Callable[..., Any], service: ServiceProcess, options: AttackOptions, connections: bool
) -> Any:
    """Call a head attack with what its signature asks for: the URL first, then ``pid``, the
    duration and (for the /predict one) the number of connections, by parameter name."""
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters:
        raise TypeError(f"{function.__name__}() takes no URL")
    kwargs: dict[str, Any] = {}
    for parameter in parameters[1:]:
        if parameter.name == "pid":
            kwargs["pid"] = service.pid
        elif parameter.name in _DURATION_PARAMETERS:
            kwargs[parameter.name] = options.duration_s
        elif parameter.name in _CONNECTION_PARAMETERS and connections:
            kwargs[parameter.name] = options.slowloris_connections
        elif parameter.name == "image":
            from sepconv_bench.comparison_attacks import sample_png

            kwargs["image"] = sample_png()
        elif parameter.default is inspect.Parameter.empty and parameter.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TypeError(f"{function.__name__}() needs {parameter.name!r}, unknown to us")
    return function(service.url, **kwargs)


def _headline(details: Any) -> Figures:
    """The scalar figures of an answer, nested dictionaries one level deep as ``outer.inner``."""
    if isinstance(details, list):
        rows = [row for row in details if isinstance(row, dict)]
        if len(rows) == 1:
            return _headline(rows[0])
        return {
            f"{index}.{key}": value
            for index, row in enumerate(rows)
            for key, value in _headline(row).items()
        }
    if not isinstance(details, dict):
        return {"result": details}
    figures: Figures = {}
    for key, value in details.items():
        if isinstance(value, dict):
            figures.update(
                {
                    f"{key}.{inner}": item
                    for inner, item in value.items()
                    if isinstance(item, int | float | str | None)
                }
            )
        elif isinstance(value, int | float | str | None):
            figures[key] = value
    return figures


def _head_attack(
    wanted: Callable[[str], bool], description: str, connections: bool = False
) -> Callable[[], Runner | str]:
    find = _head_function(wanted, description)

    def resolve() -> Runner | str:
        function = find()
        if isinstance(function, str):
            return function

        def run(service: ServiceProcess, options: AttackOptions) -> tuple[Figures, Any]:
            details = plain(_call(function, service, options, connections))
            return {"function": function.__name__, **_headline(details)}, details

        return run

    return resolve


def _is_endless(name: str) -> bool:
    return "endless" in name


def _is_slowloris_predict(name: str) -> bool:
    return "predict" in name and ("slowloris" in name or "slow" in name)


def _is_held(name: str) -> bool:
    return ("slowloris" in name or "idle" in name) and "predict" not in name


ATTACKS: tuple[Attack, ...] = (
    Attack(
        "decode",
        "decode CPU of the worst JPEG; peak and settled RSS under 8 concurrent worst cases",
        lambda: _decode,
    ),
    Attack(
        "comparisons",
        "/predict p50/p99 idle and during a flood of heavy comparisons",
        lambda: _comparisons,
        _compare_env,
    ),
    Attack(
        "endless-headers",
        "memory growth per connection sending an endless header",
        _head_attack(_is_endless, "endless headers (a name with 'endless')"),
    ),
    Attack(
        "slowloris",
        "idle and slowloris connections held, and for how long",
        _head_attack(_is_held, "held connections (a name with 'slowloris' or 'idle')", True),
    ),
    Attack(
        "slowloris-predict",
        "/predict p50/p99 during slowloris connections",
        _head_attack(
            _is_slowloris_predict, "/predict during slowloris ('predict' and 'slowloris')", True
        ),
    ),
)
ATTACK_NAMES = tuple(attack.name for attack in ATTACKS)


def run_attack(
    attack: Attack, model_dir: Path, options: AttackOptions, extra_env: dict[str, str]
) -> Outcome:
    """One attack against a fresh service; never raises for the attack's own failure."""
    runner = attack.resolve()
    if isinstance(runner, str):
        return Outcome(attack.name, attack.what, "not available", reason=runner)
    env = {"SEPCONV_WORKERS": "1", **attack.service_env(options), **extra_env}
    outcome = Outcome(attack.name, attack.what, "failed", service_env=env)
    started = time.perf_counter()
    pid: int | None = None
    with tempfile.TemporaryDirectory(prefix="sepconv-attack-") as scratch:
        try:
            with running_service(model_dir, env, log=Path(scratch) / "service.log") as service:
                pid, started = service.pid, time.perf_counter()
                figures, details = runner(service, options)
                outcome.status, outcome.figures, outcome.details = "ok", figures, plain(details)
        except subprocess.TimeoutExpired as error:
            # The figures are in; only the service's exit was slow (on a starved machine):
            # say so, and do not leave it running.
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            outcome.reason = f"the service did not stop after SIGTERM ({error})"[:2000]
        except (Exception, SystemExit) as error:  # running_service exits when not ready
            outcome.status = "failed"
            outcome.reason = f"{type(error).__name__}: {error}"[:2000]
    outcome.seconds = round(time.perf_counter() - started, 1)
    return outcome


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def format_table(outcomes: Sequence[Outcome]) -> str:
    """One row a figure: attack, figure, value; an attack not run gets one row saying why."""
    rows: list[tuple[str, str, str]] = []
    for outcome in outcomes:
        if outcome.status != "ok":
            rows.append((outcome.name, outcome.status, outcome.reason or ""))
            continue
        rows.append((outcome.name, f"({outcome.what}; {outcome.seconds:g} s)", ""))
        rows.extend(("", label, _value(value)) for label, value in outcome.figures.items())
    widths = [max(len(row[i]) for row in [("Attack", "Figure", "Value"), *rows]) for i in (0, 1)]
    lines = [f"{'Attack':<{widths[0]}}  {'Figure':<{widths[1]}}  Value"]
    lines.append("-" * (widths[0] + widths[1] + 4 + max(5, *(len(r[2]) for r in rows))))
    lines.extend(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows)
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ATTACK_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown attack {', '.join(unknown)}; choose from {', '.join(ATTACK_NAMES)}"
        )
    return names


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sepconv-bench --attacks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="models to serve (default: models/)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help="about how long each attack runs, in seconds (default %(default)g)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-results/attacks.json"),
        help="where to write the figures (default %(default)s)",
    )
    parser.add_argument(
        "--only",
        type=_names,
        default=list(ATTACK_NAMES),
        metavar="NAME[,NAME]",
        help=f"the attacks to run, of {', '.join(ATTACK_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--slowloris-connections",
        type=int,
        default=DEFAULT_SLOWLORIS_CONNECTIONS,
        help="slowloris connections held while /predict is timed (default %(default)d)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra settings for the services it starts (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen attacks; 0 when none failed ("not available" is not a failure)."""
    args = _parse(argv)
    from service.process.settings import Settings

    model_dir = args.model_dir or Settings().model_dir
    options = AttackOptions(args.duration, args.slowloris_connections)
    extra_env = dict(item.split("=", 1) for item in args.service_env)
    outcomes = []
    for attack in ATTACKS:
        if attack.name not in args.only:
            continue
        print(f"[{attack.name}] {attack.what}", flush=True)
        outcome = run_attack(attack, Path(model_dir), options, extra_env)
        why = f": {outcome.reason}" if outcome.reason else ""
        print(f"  {outcome.status} ({outcome.seconds:g} s){why}", flush=True)
        outcomes.append(outcome)
    results = {
        "model_dir": str(model_dir),
        "duration_s": options.duration_s,
        "attacks": {outcome.name: dataclasses.asdict(outcome) for outcome in outcomes},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(plain(results), indent=2) + "\n")
    print()
    print(format_table(outcomes))
    print(f"\nWrote {args.json}")
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0
