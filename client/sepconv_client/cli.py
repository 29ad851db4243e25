"""``sepconv-client``: classify images, list the models and compare them, from the shell.

The shared options (--url, --json, --timeout, --retries) are accepted before or after the
subcommand: ``sepconv-client models --json`` and ``sepconv-client --json models`` are the same.
With --json every command prints exactly one JSON document, whatever the number of images.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from sepconv_client.calls import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    SepconvError,
)
from sepconv_client.client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    URL_VARIABLE,
    SepconvClient,
    default_url,
)
from sepconv_contract.limits import ALL_MODELS, DEFAULT_TOP_K, MAX_TOP_K, MIN_TOP_K
from sepconv_contract.schemas import CompareResponse, ModelInfo, PredictResponse

PROG = "sepconv-client"
DESCRIPTION = "Classify images, list the models and compare them, against a sepconv-serve."


def _add_shared_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes; a subcommand's copy has no defaults of its own.

    argparse lets a subcommand's defaults overwrite what was parsed before the subcommand
    name, so only the top-level parser sets them; a subcommand's copy records a value only
    when it is given there.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(default_url()),
        help=f"the service's base URL (default: ${URL_VARIABLE}, else http://127.0.0.1:8000; "
        f"now {default_url()})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the answer as one JSON document (default: a table)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"per-request timeout (default: {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=default(DEFAULT_RETRIES),
        help="retries of a 503 (after its Retry-After) or of a connection closed without an "
        f"answer (default: {DEFAULT_RETRIES})",
    )


def _add_prediction_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument(
        "--model",
        default=ALL_MODELS,
        help=f"one model's name, or {ALL_MODELS!r} for every ready model (default: {ALL_MODELS})",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"classes listed per model, {MIN_TOP_K}-{MAX_TOP_K} (default: {DEFAULT_TOP_K})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    _add_shared_options(parser, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    _add_shared_options(shared, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser(
        "predict",
        parents=[shared],
        help="classify images, one request each (the raw-body fast path)",
        description="Classify each image in its own request, sent as the raw body.",
    )
    _add_prediction_options(predict)
    batch = commands.add_parser(
        "batch",
        parents=[shared],
        help="classify images in one request (POST /predict/batch)",
        description="Classify the images in one multipart request; the service runs them "
        "together. The batch is refused whole if one file is not an image.",
    )
    _add_prediction_options(batch)
    commands.add_parser(
        "models",
        parents=[shared],
        help="list the models",
        description="List the models: parameters, MACs, test accuracy, device and status.",
    )
    compare = commands.add_parser(
        "compare",
        parents=[shared],
        help="time the models side by side",
        description="A fair, interleaved latency comparison on the server.",
    )
    compare.add_argument(
        "--image", default=None, help="image to time on (default: a synthetic input)"
    )
    compare.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"timed rounds (default: {DEFAULT_REPEATS})",
    )
    compare.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per engine call (default: {DEFAULT_BATCH_SIZE})",
    )
    compare.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed rounds first (default: {DEFAULT_WARMUP})",
    )
    compare.add_argument(
        "--models",
        default=ALL_MODELS,
        help=f"comma-separated model names, or {ALL_MODELS!r} (default: {ALL_MODELS})",
    )
    compare.add_argument(
        "--runtimes",
        default=None,
        help="comma-separated runtimes, e.g. tensorflow,onnxruntime (default: the service's "
        "serving runtime)",
    )
    return parser


def format_prediction(name: str, answer: PredictResponse) -> str:
    header = f"{name}  ({answer.image.format} {answer.image.width}x{answer.image.height}"
    # Agreement means something only when more than one model answered.
    if len(answer.predictions) > 1:
        header += ", models agree" if answer.agreement else ", models DISAGREE"
    lines = [header + ")"]
    for p in answer.predictions:
        others = ", ".join(f"{c.label} {c.probability:.2f}" for c in p.top_k[1:])
        lines.append(
            f"  {p.model:<10} {p.label:<11} {p.confidence:6.1%}  {p.latency_ms:7.2f} ms"
            + (f"   next: {others}" if others else "")
        )
    return "\n".join(lines)


def format_models(models: list[ModelInfo]) -> str:
    rows = [
        f"{'model':<10} {'status':<7} {'parameters':>11} {'MACs/image':>13} "
        f"{'accuracy':>9} {'device':<7} runtime"
    ]
    for m in models:
        accuracy = f"{m.test_accuracy:.2%}" if m.test_accuracy is not None else "-"
        rows.append(
            f"{m.name:<10} {m.status:<7} {m.parameters or 0:>11,} "
            f"{m.macs_per_image or 0:>13,} {accuracy:>9} {m.device or '-':<7} {m.runtime}"
        )
    return "\n".join(rows)


def format_compare(result: CompareResponse) -> str:
    rows = [
        f"{result.repeats} interleaved rounds at batch {result.batch_size} on {result.device} "
        f"({result.input} input)"
        + (
            f", stopped at the time budget ({result.requested_repeats} asked)"
            if result.stopped_at_budget
            else ""
        ),
        f"{'model':<24} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'images/s':>10} "
        f"{'parameters':>11}",
    ]
    several_runtimes = len({m.runtime for m in result.models}) > 1
    for m in result.models:
        name = f"{m.model} ({m.runtime})" if several_runtimes else m.model
        rows.append(
            f"{name:<24} {m.latency_ms.p50:>8.2f} {m.latency_ms.p95:>8.2f} "
            f"{m.latency_ms.p99:>8.2f} {m.images_per_second:>10.1f} "
            f"{m.parameters or 0:>11,}"
        )
    # With several runtimes: what separable convolutions buy on each, against the arithmetic.
    speedups = result.matrix.separable_speedups if result.matrix else []
    if len(speedups) > 1 or several_runtimes:
        for row in speedups:
            if row.speedup is None:
                continue
            allowed = (
                f" of the {row.mac_ratio:.2f}x the multiply-adds allow "
                f"(efficiency {row.depthwise_efficiency:.0%})"
                if row.mac_ratio and row.depthwise_efficiency is not None
                else ""
            )
            rows.append(
                f"on {row.runtime}: {row.separable_model} is {row.speedup:.2f}x faster than "
                f"{row.regular_model} at p50{allowed}"
            )
    summary = result.summary
    rows.append(
        summary.headline
        or f"{summary.fastest} is fastest: {summary.speedup:.2f}x at p50"
        + (f" against {summary.speedup_versus}" if summary.speedup_versus else "")
    )
    return "\n".join(rows)


def _error_entry(name: str, error: SepconvError) -> dict[str, Any]:
    return {
        "file": name,
        "error": {"status": error.status_code, "code": error.code, "message": error.message},
    }


def _predict_each(client: SepconvClient, args: argparse.Namespace) -> int:
    """One request per image; a failing image is reported and the others still answered."""
    results: list[dict[str, Any]] = []
    failed = 0
    for name in args.images:
        try:
            answer = client.predict(name, model=args.model, top_k=args.top_k)
        except SepconvError as error:
            if error.status_code >= 500 or error.code == "MODEL_NOT_FOUND":
                raise  # the service or the request is at fault, not this image
            failed += 1
            results.append(_error_entry(name, error))
            if not args.json:
                print(f"{PROG}: {name}: {error}", file=sys.stderr)
            continue
        except OSError as error:
            failed += 1
            results.append({"file": name, "error": {"code": "UNREADABLE", "message": str(error)}})
            if not args.json:
                print(f"{PROG}: {name}: {error.strerror or error}", file=sys.stderr)
            continue
        results.append({"file": name, **answer.model_dump(mode="json", exclude_none=True)})
        if not args.json:
            print(format_prediction(name, answer))
    if args.json:
        print(json.dumps({"results": results, "count": len(results)}, indent=2))
    return 1 if failed else 0


def _predict_batch(client: SepconvClient, args: argparse.Namespace) -> int:
    answer = client.predict_batch(args.images, model=args.model, top_k=args.top_k)
    if args.json:
        results = [
            {"file": name, **result.model_dump(mode="json", exclude_none=True)}
            for name, result in zip(args.images, answer.results, strict=True)
        ]
        print(json.dumps({"results": results, "count": answer.count}, indent=2))
    else:
        for name, result in zip(args.images, answer.results, strict=True):
            print(format_prediction(name, result))
    return 0


def _run(client: SepconvClient, args: argparse.Namespace) -> int:
    if args.command == "predict":
        return _predict_each(client, args)
    if args.command == "batch":
        return _predict_batch(client, args)
    if args.command == "models":
        models = client.models()
        if args.json:
            body = {"models": [m.model_dump(mode="json") for m in models], "count": len(models)}
            print(json.dumps(body, indent=2))
        else:
            print(format_models(models))
        return 0
    result = client.compare(
        args.image,
        repeats=args.repeats,
        batch_size=args.batch_size,
        warmup=args.warmup,
        models=args.models,
        runtimes=args.runtimes,
    )
    print(
        result.model_dump_json(indent=2, exclude_none=True) if args.json else format_compare(result)
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with SepconvClient(args.url, timeout=args.timeout, max_retries=args.retries) as client:
            return _run(client, args)
    except SepconvError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
    except OSError as error:  # an image file that cannot be read
        print(f"{PROG}: {error}", file=sys.stderr)
    except httpx.TransportError as error:
        print(f"{PROG}: cannot reach {args.url}: {error}", file=sys.stderr)
    except httpx.InvalidURL as error:
        print(f"{PROG}: invalid --url {args.url!r}: {error}", file=sys.stderr)
    return 1
