"""``spos export``: model.pt -> ONNX (+ TensorRT engine), each checked for parity against PyTorch."""

from __future__ import annotations

import argparse
import sys

from pipeline.output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a retrained model.pt to ONNX / TensorRT, with parity checks on real images",
        description="Writes OUT/model.onnx (dynamic batch 1..BATCH, onnx.checker-checked) and, with "
        "--format onnx,tensorrt, OUT/model.engine with its JSON sidecar; each is compared with PyTorch on "
        "test images of the model's dataset (fp32: rtol 1e-4 / atol 1e-5 and identical top-1; a quantized net's "
        "INT8 QDQ graph against its fake-quant model: 1e-3 of the logit range, same top-1). A parity "
        "failure exits non-zero with the max error. OUT/export.json describes the artifacts.",
    )
    p.add_argument("--checkpoint", required=True, help="model.pt written by spos retrain")
    p.add_argument("--format", default="onnx", help="onnx or onnx,tensorrt (default onnx)")
    p.add_argument("--batch", type=int, default=32, help="largest batch of the graph / engine profile (default 32)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp16 exports an FP16 graph")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--parity-images", type=int, default=64, help="test images compared (default 64)")
    p.add_argument("--seed", type=int, default=0, help="which test images (default 0)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--json", action="store_true", help="print the artifact paths and parity errors as JSON")
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from export.deploy import export_model
    from export.parity import ParityError

    try:
        result = export_model(
            args.checkpoint, args.out, formats=args.format, batch=args.batch, precision=args.precision,
            opset=args.opset, num_images=args.parity_images, seed=args.seed,
        )
    except ParityError as exc:
        # Distinct from bad input (2): the files exist, but they do not compute what PyTorch computes.
        print(f"spos export: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result.to_json())
        return 0
    for parity in result.parity:
        print(parity.summary())
    print(f"onnx     {result.onnx}")
    if result.engine:
        print(f"engine   {result.engine}")
    print(f"card     {result.card}")
    return 0
