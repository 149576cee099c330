"""INT8 post-training quantization of an ONNX model already exported, with the options export.py does not take.

The one command for an INT8 model is ``python export.py --ckpt_file=CKPT --file_format=ONNX --quantize=int8
--calib_data_dir=/data/train`` (the same calibration and check, ``src.deploy.quantize.quantize_exported``). This
tool adds what measurements and hard cases need: quantizing an ONNX file that exists (exported before records
existed: ``--ckpt_file``), the calibration method, nodes kept in float32, per-tensor weights, and an OpenVINO IR.

    python tools/quantize_int8.py --model=net.onnx --calib_data_dir=/data/train [--ckpt_file=CKPT]
        [--output=net.int8.onnx] [--calib_images=300] [--calib_seed=0] [--calib_method=minmax]
        [--exclude_nodes=NAME,NAME] [--fp32_activations] [--openvino]

Calibration: ``--calib_images`` images of ``--calib_data_dir`` (an ImageFolder training tree), spread evenly
over its classes, preprocessed by the project's eval pipeline exactly as the model's record says (input size,
resize mode, crop fraction); up to 100 other images of it then compare INT8 with FP32 (agreement printed). Output: ``--output`` (default ``<model>.int8.onnx``), a QDQ model (int8 weights per
channel, uint8 activations) that onnxruntime and ``ascend310_infer`` (ORT_CPU) run, with the model record
copied in and a ``quantization`` entry added. ``--openvino`` also writes ``<output stem>.xml/.bin``, an OpenVINO
IR quantized by NNCF (needs ``pip install openvino nncf``; not a requirement).

The model's record tells the preprocessing. An ONNX file exported before records existed has none: pass
``--ckpt_file`` (the checkpoint it was exported from) and the record is built from it and written into both
files. ``--exclude_nodes`` keeps the named nodes (of the pre-processed graph: ``--list_nodes`` prints them) in
float32; ``--fp32_activations`` quantizes only the convolutions and the classifier (Conv, Gemm, MatMul) and
leaves activations, additions and concatenations in float32.

Exit status: 0 written; 2 bad option, file or data (one ``error:`` line).
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def _record_for(model, ckpt_file):
    """The model's record; built from ``ckpt_file`` (and written into ``model``) when the file has none."""
    from src.deploy.record import build_model_record, read_model_record, write_model_record
    from src.errors import ModelRecordError

    record, where = read_model_record(model)
    if record is not None:
        return record, where
    if not ckpt_file:
        raise ModelRecordError(f"{model} has no model record, so its preprocessing is unknown: pass --ckpt_file=CKPT "
                               "(the checkpoint it was exported from) or export it again with this project's export.py")
    from src.checkpoint import checkpoint_model_info
    from src.deploy.quantize import require_onnx_tools

    _, onnxruntime, _ = require_onnx_tools()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    if not all(isinstance(v, int) for v in shape):
        raise ModelRecordError(f"{model}: input shape {shape} is not fixed; export it with a fixed size")
    out_type = session.get_outputs()[0].type
    info = checkpoint_model_info(ckpt_file)
    if info.get("problem"):
        raise ModelRecordError(f"{ckpt_file}: {info['problem']}")
    arch, num_classes = info["arch"] or "cspdarknet53", info["num_classes"] or 1000
    record = build_model_record(ckpt_file, arch, num_classes, shape, info=info, file_format="ONNX",
                                output_dtype="float16" if "float16" in out_type else "float32")
    write_model_record(model, record)
    return record, f"{model} (built from {ckpt_file})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the FP32 ONNX model (from export.py --file_format=ONNX)")
    p.add_argument("--calib_data_dir", default="", help="ImageFolder of training images for the calibration")
    p.add_argument("--ckpt_file", default="", help="checkpoint the model came from (only for a model without record)")
    p.add_argument("--output", default="", help="INT8 model to write (default <model>.int8.onnx)")
    p.add_argument("--calib_images", type=int, default=300, help="calibration images (default 300)")
    p.add_argument("--calib_seed", type=int, default=0, help="seed of the calibration image choice")
    p.add_argument("--calib_method", default="minmax", help="minmax (default), percentile or entropy")
    p.add_argument("--exclude_nodes", default="", help="comma-separated node names kept in float32")
    p.add_argument("--fp32_activations", action="store_true",
                   help="quantize only Conv/Gemm/MatMul; activations, Add, Concat stay float32")
    p.add_argument("--per_tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--openvino", action="store_true", help="also write an OpenVINO INT8 IR (openvino + nncf)")
    p.add_argument("--list_nodes", action="store_true", help="print the pre-processed graph's nodes and exit")
    args = p.parse_args(argv)

    from src.errors import UserError

    try:
        return _run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args):
    import tempfile

    from src.deploy.quantize import (calibration_batches, int8_path, onnx_node_names, preprocessed_graph,
                                     quantize_exported, quantize_openvino, require_onnx_tools)
    from src.deploy.record import describe_record
    from src.errors import ConfigError, DatasetError
    from src.utils.fileio import check_output_file

    require_onnx_tools()
    model = os.path.abspath(args.model)
    if not os.path.isfile(model):
        raise ConfigError(f"--model={args.model}: no such file")
    if not model.lower().endswith(".onnx"):
        raise ConfigError(f"--model={args.model}: expected an .onnx file (export.py --file_format=ONNX)")
    if args.list_nodes:
        with tempfile.TemporaryDirectory() as tmp:
            pre = os.path.join(tmp, "pre.onnx")
            preprocessed_graph(model, pre)
            for name, op in onnx_node_names(pre):
                print(f"{op}\t{name}")
        return 0
    if not args.calib_data_dir:
        raise ConfigError("--calib_data_dir is required: a folder of training images (root/<class>/<image>)")
    if not os.path.isdir(args.calib_data_dir):
        raise DatasetError(f"--calib_data_dir={args.calib_data_dir}: no such folder")
    output = args.output or int8_path(model)
    output = check_output_file(output, "output", inputs=[model, args.calib_data_dir] + ([args.ckpt_file] if
                                                                                        args.ckpt_file else []))
    record, where = _record_for(model, args.ckpt_file)
    print(f"model record: {where}: {describe_record(record)}")
    exclude = [n for n in args.exclude_nodes.split(",") if n]
    info = quantize_exported(model, output, args.calib_data_dir, record, args.calib_images, args.calib_seed,
                             log=lambda line: print(line, flush=True), calibrate_method=args.calib_method,
                             per_channel=not args.per_tensor, exclude_nodes=exclude,
                             op_types=WEIGHT_OPS if args.fp32_activations else None)
    size = os.path.getsize(output) / 2 ** 20
    print(f"wrote {output} ({size:.1f} MiB): {info['scheme']}, weights {info['weights']}, "
          f"activations {info['activations'] if not args.fp32_activations else 'float32'}, "
          f"calibration {info['calibration']}" + (f", {len(exclude)} nodes in float32" if exclude else ""))
    if args.openvino:
        xml = os.path.splitext(output)[0] + ".xml"
        batches = calibration_batches(args.calib_data_dir, record, args.calib_images, int(record["input"]["shape"][0]),
                                      args.calib_seed)
        ov_info = quantize_openvino(model, xml, batches, ignored_nodes=())
        print(f"wrote {xml} (+ .bin): {ov_info['scheme']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
