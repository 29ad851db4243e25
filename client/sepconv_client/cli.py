"""``sepconv-client``: predict, list models and compare from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pydantic import BaseModel

from sepconv_client.client import DEFAULT_URL, SepconvClient, SepconvError
from sepconv_contract.schemas import CompareResponse, ModelInfo, PredictResponse


def _print_json(value: BaseModel | list[BaseModel]) -> None:
    if isinstance(value, list):
        print(json.dumps([v.model_dump(mode="json") for v in value], indent=2))
    else:
        print(value.model_dump_json(indent=2, exclude_none=True))


def _format_predictions(path: str, answer: PredictResponse) -> str:
    lines = [
        f"{path}  ({answer.image.format} {answer.image.width}x{answer.image.height}, "
        f"{'models agree' if answer.agreement else 'models DISAGREE'})"
    ]
    for p in answer.predictions:
        others = ", ".join(f"{c.label} {c.probability:.2f}" for c in p.top_k[1:])
        lines.append(
            f"  {p.model:<10} {p.label:<11} {p.confidence:6.1%}  "
            f"{p.latency_ms:7.2f} ms   next: {others}"
        )
    return "\n".join(lines)


def _format_models(models: list[ModelInfo]) -> str:
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


def _format_compare(result: CompareResponse) -> str:
    rows = [
        f"{result.repeats} interleaved rounds at batch {result.batch_size} on {result.device} "
        f"({result.input} input)",
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
    s = result.summary
    rows.append(
        f"{s.fastest} is fastest: {s.speedup:.2f}x at p50"
        + (f"; parameter ratio {s.parameter_ratio:.1f}x" if s.parameter_ratio else "")
        + (f"; MAC ratio {s.mac_ratio:.1f}x" if s.mac_ratio else "")
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sepconv-client", description=__doc__)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--json", action="store_true", help="print the raw JSON answers")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify one or more images")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--model", default="all")
    predict.add_argument("--top-k", type=int, default=3)
    commands.add_parser("models", help="list the models")
    compare = commands.add_parser("compare", help="time the models side by side")
    compare.add_argument("--image", default=None)
    compare.add_argument("--repeats", type=int, default=50)
    compare.add_argument("--batch-size", type=int, default=1)
    compare.add_argument("--warmup", type=int, default=5)
    compare.add_argument(
        "--runtimes", default=None, help="e.g. tensorflow,onnxruntime (default: the service's)"
    )
    args = parser.parse_args(argv)

    try:
        with SepconvClient(args.url) as client:
            if args.command == "predict":
                for path in args.images:
                    answer = client.predict(path, model=args.model, top_k=args.top_k)
                    _print_json(answer) if args.json else print(_format_predictions(path, answer))
            elif args.command == "models":
                models = client.models()
                _print_json(list(models)) if args.json else print(_format_models(models))
            else:
                result = client.compare(
                    args.image,
                    repeats=args.repeats,
                    batch_size=args.batch_size,
                    warmup=args.warmup,
                    runtimes=args.runtimes,
                )
                _print_json(result) if args.json else print(_format_compare(result))
    except SepconvError as error:
        print(f"sepconv-client: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"sepconv-client: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # httpx transport errors: the service is not reachable
        print(f"sepconv-client: cannot reach {args.url}: {error}", file=sys.stderr)
        return 1
    return 0
