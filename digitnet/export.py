"""`python -m digitnet export`: the trained network as an ONNX model, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch

from digitnet.arguments import command_parser
from digitnet.errors import DigitnetError
from digitnet.files import check_output, replacing
from digitnet.mnist import TEST_FILES, default_data_dir, load_split
from digitnet.images import scaling_text, to_input
from digitnet.checkpoints import announce_default_checkpoint
from digitnet.recognizer import DigitRecognizer


def export_onnx(ckpt_path: str | None = None, output: str = "model.onnx", data_dir: str | None = None,
                check_images: int = 256, tolerance: float = 1e-4) -> float:  # fmt: skip
    """Export a checkpoint's network to ONNX, then check that onnxruntime gives PyTorch's logits.

    Args:
        ckpt_path: The DigitClassifier checkpoint; default: the best (else the newest) checkpoint of the latest
            run under lightning_logs/.
        output: The ONNX file to write (weights included).
        data_dir: Where MNIST's test images are, to check on; default: $DIGITNET_DATA_DIR, else ./data.
            Without them the check runs on random inputs.
        check_images: How many test images to compare the logits on.
        tolerance: Largest absolute difference of logits accepted.

    Returns:
        The largest absolute difference between onnxruntime's and PyTorch's logits.
    """
    check_output(output)
    if check_images < 1:
        raise DigitnetError(f"--check_images must be at least 1, got {check_images}")
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as err:
        raise DigitnetError(f"export needs {err.name}: pip install -e '.[export]'") from None
    if ckpt_path is None:
        ckpt_path = str(announce_default_checkpoint("Exporting"))
    recognizer = DigitRecognizer.from_checkpoint(ckpt_path)
    net = recognizer.net.cpu()
    scaling = scaling_text(recognizer.normalize)
    with replacing(output) as tmp:  # a model that fails its check replaces no earlier file
        torch.onnx.export(net, (torch.zeros(2, 1, 28, 28),), tmp, input_names=["image"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                          verbose=False)  # fmt: skip
        model = onnx.load(tmp)
        model.doc_string = (f"digitnet {type(net).__name__} from {Path(ckpt_path).name}: image (N, 1, 28, 28) float32 "
                            f"= {scaling}, MNIST-style (white digit on black, centred) -> logits (N, 10)")  # fmt: skip
        onnx.helper.set_model_props(model, {"input_scaling": scaling, "source_checkpoint": str(ckpt_path)})
        onnx.save(model, tmp)

        x, source = _check_batch(data_dir, check_images, recognizer.normalize)
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"image": x.numpy()})
        diff = float(abs(logits - net(x).detach().numpy()).max())
        if not diff <= tolerance:
            raise DigitnetError(f"the ONNX model's logits differ from PyTorch's by {diff:.2e} on {len(x)} {source}, "
                                f"more than {tolerance:g}; {output} was not written")  # fmt: skip
    print(f"Wrote {output} ({Path(output).stat().st_size / 1e6:.1f} MB): input 'image' (N, 1, 28, 28) float32 "
          f"= {scaling}, output 'logits' (N, 10)")  # fmt: skip
    print(f"onnxruntime vs PyTorch on {len(x)} {source}: max |logit difference| = {diff:.2e} (tolerance {tolerance:g})")
    return diff


def _check_batch(data_dir: str | None, n: int, normalize: bool) -> tuple[torch.Tensor, str]:
    data_dir = data_dir or default_data_dir()
    try:
        images, _ = load_split(data_dir, TEST_FILES)
        return to_input(images[:n], normalize), "MNIST test images"
    except DigitnetError:
        x = torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(0)) * 255
        return to_input(x, normalize), f"random inputs (no MNIST test images in {data_dir})"


def main(args: list[str] | None = None) -> None:
    parser = command_parser("export", export_onnx, args)
    # Flags from export_onnx's signature and docstring, but --data.data_dir, spelled as in fit, test and predict.
    parser.add_function_arguments(export_onnx, as_group=False, skip={"data_dir"})
    parser.add_argument("--data.data_dir", type=str | None, default=None,
                        help="MNIST's folder, for the check on its test images; default: $DIGITNET_DATA_DIR, "
                             "else ./data")
    config = parser.parse_args(args).as_dict()
    export_onnx(data_dir=config.pop("data")["data_dir"], **config)
