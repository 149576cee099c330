"""The bad-input survey behind docs/errors.md: runs every entry point (train, eval, export, predict,
postprocess, the label tool, the launch scripts) on about 200 bad inputs, as a user would (a subprocess,
GLOG_v unset), and records the exit status, the error line, anything printed before it, whether a
traceback appeared and what was left in the output folder.

    python research/error_survey.py --json survey.json                          # this checkout
    python research/error_survey.py --repo /path/to/old/checkout --json old.json
    python research/error_survey.py --markdown docs/errors.md --from survey.json --before old.json

Needs a CPU MindSpore; trains one tiny run for its fixtures (a minute) and takes 10-20 minutes in all.
Not a test: the cases that matter have tests (the "test" column of the table names them).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- fixtures
def img(path, c, rng, size=36):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((rng.rand(size, size, 3) * 60 + c * 90).astype(np.uint8)).save(path)

def make_fixtures(repo, FX):
    if os.path.isdir(FX):
        shutil.rmtree(FX)
    rng = np.random.RandomState(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in range(2):
            for i in range(n):
                img(f"{FX}/data/{split}/class{c}/img{i}.jpg", c, rng)
    for c in range(3):
        img(f"{FX}/data3/class{c}/img0.jpg", c, rng)
    img(f"{FX}/one/only/img0.jpg", 0, rng); img(f"{FX}/one/only/img1.jpg", 0, rng)
    os.makedirs(f"{FX}/noimg/a"); os.makedirs(f"{FX}/noimg/b")
    os.makedirs(f"{FX}/noclass"); open(f"{FX}/noclass/x.jpg", "w").close()
    for c in range(2):
        os.makedirs(f"{FX}/corrupt/c{c}")
        open(f"{FX}/corrupt/c{c}/x.jpg", "w").write("not an image")
    open(f"{FX}/afile", "w").write("x")
    os.makedirs(f"{FX}/emptydir")
    # data lists
    open(f"{FX}/list_bad.txt", "w").write("class0/img0.jpg\n")
    open(f"{FX}/list_label.txt", "w").write("class0/img0.jpg x\n")
    open(f"{FX}/list_neg.txt", "w").write("class0/img0.jpg -1\n")
    open(f"{FX}/list_empty.txt", "w").write("\n")
    # configs
    open(f"{FX}/bad.yaml", "w").write("lr: [1\n")
    open(f"{FX}/unknown.yaml", "w").write("learning_rate: 0.1\n")
    open(f"{FX}/dup.yaml", "w").write("lr: 0.1\nlr: 0.2\n")
    open(f"{FX}/list.yaml", "w").write("- lr\n- 0.1\n")
    open(f"{FX}/latin1.yaml", "wb").write("data_dir: /tmp/caf\xe9\n".encode("latin-1"))
    open(f"{FX}/badtype.yaml", "w").write("max_epoch: ten\n")
    # trained run
    env = dict(os.environ, GLOG_v="3")
    subprocess.run([sys.executable, f"{repo}/train.py", "--arch=cspdarknet_tiny", "--image_size=32,32",
                    f"--data_dir={FX}/data/train", f"--val_data_dir={FX}/data/val", "--num_classes=2",
                    "--per_batch_size=4", "--max_epoch=2", "--warmup_epochs=0", "--num_parallel_workers=1",
                    f"--ckpt_path={FX}/runs"], check=True, env=env, capture_output=True)
    run = os.path.join(f"{FX}/runs", os.listdir(f"{FX}/runs")[0])
    os.symlink(run, f"{FX}/run")
    ck = f"{run}/ckpt_0/0-2_2.ckpt"
    os.makedirs(f"{FX}/ck")
    shutil.copy(ck, f"{FX}/ck/good.ckpt")
    data = open(ck, "rb").read()
    open(f"{FX}/ck/trunc.ckpt", "wb").write(data[:len(data) // 3])
    open(f"{FX}/ck/random.ckpt", "wb").write(os.urandom(4096))
    open(f"{FX}/ck/empty.ckpt", "wb").close()
    open(f"{FX}/ck/weights.txt", "w").write("x")
    open(f"{FX}/ck/model.pth", "wb").write(os.urandom(100))
    open(f"{FX}/ck/bad.safetensors", "wb").write(b"\xff" * 20)
    subprocess.run([sys.executable, "-c", "import mindspore as ms, numpy as np; ms.save_checkpoint([{'name': 'foo', 'data': "
                    f"ms.Tensor(np.ones(3, np.float32))}}], '{FX}/ck/foreign.ckpt')"], check=True, env=env,
                   capture_output=True)
    for name, files in (("mixed", ["good.ckpt", "trunc.ckpt"]), ("mixed_foreign", ["good.ckpt", "foreign.ckpt"]),
                        ("allbad", ["trunc.ckpt", "random.ckpt"])):
        os.makedirs(f"{FX}/{name}")
        for f in files:
            shutil.copy(f"{FX}/ck/{f}", f"{FX}/{name}/{f}")
    # resume targets
    os.makedirs(f"{FX}/noresume")
    # images
    img(f"{FX}/imgs/ok.jpg", 0, rng)
    os.makedirs(f"{FX}/badimgs")
    open(f"{FX}/badimgs/a.jpg", "w").write("text")
    open(f"{FX}/badimgs/b.png", "wb").write(os.urandom(64))
    os.makedirs(f"{FX}/noimgs"); open(f"{FX}/noimgs/readme.txt", "w").write("x")
    # class names
    open(f"{FX}/names3.txt", "w").write("a\nb\nc\n")
    open(f"{FX}/names_latin1.txt", "wb").write("caf\xe9\nb\n".encode("latin-1"))
    open(f"{FX}/names_bad.json", "w").write("{not json")
    open(f"{FX}/names_empty.txt", "w").write("")
    # postprocess
    os.makedirs(f"{FX}/res")
    np.array([[0.1, 0.9]], np.float32).tofile(f"{FX}/res/a_0.bin")
    np.array([[0.8, 0.2]], np.float32).tofile(f"{FX}/res/b_0.bin")
    os.makedirs(f"{FX}/res_odd")
    open(f"{FX}/res_odd/a_0.bin", "wb").write(b"\0" * 7)
    os.makedirs(f"{FX}/res_mixed")
    np.zeros((1, 4), np.float32).tofile(f"{FX}/res_mixed/a_0.bin")
    np.zeros((1, 8), np.float32).tofile(f"{FX}/res_mixed/b_0.bin")
    os.makedirs(f"{FX}/res_amb")
    np.zeros((1, 8), np.float32).tofile(f"{FX}/res_amb/a_0.bin")
    json.dump({"a.JPEG": 1, "b.JPEG": 0}, open(f"{FX}/labels.json", "w"))
    json.dump({"a.JPEG": 0}, open(f"{FX}/labels_amb.json", "w"))
    json.dump({"zz.JPEG": 1}, open(f"{FX}/labels_nomatch.json", "w"))
    json.dump({"a.JPEG": -1}, open(f"{FX}/labels_neg.json", "w"))
    json.dump({"a.JPEG": "cat"}, open(f"{FX}/labels_str.json", "w"))
    json.dump({"a.JPEG": 5}, open(f"{FX}/labels_big.json", "w"))
    json.dump({"a.JPEG": 1, "a": 0}, open(f"{FX}/labels_twice.json", "w"))
    json.dump([1, 2], open(f"{FX}/labels_list.json", "w"))
    open(f"{FX}/labels_bad.json", "w").write("{oops")
    open(f"{FX}/labels_latin1.json", "wb").write('{"caf\xe9": 1}'.encode("latin-1"))
    # label tool
    for c in ("c0", "c1"):
        os.makedirs(f"{FX}/lab/{c}")
    open(f"{FX}/lab/c0/x.JPEG", "w").write("x")
    open(f"{FX}/lab/c1/x.JPEG", "w").write("x")        # duplicate name
    os.makedirs(f"{FX}/lab_empty/c0")
    os.makedirs(f"{FX}/lab_ok/c0"); open(f"{FX}/lab_ok/c0/y.JPEG", "w").write("x")
    os.makedirs(f"{FX}/lab_nonutf8/c0")
    open(os.fsencode(f"{FX}/lab_nonutf8/c0/") + b"caf\xe9.JPEG", "w").write("x")
    open(f"{FX}/list_latin1.txt", "wb").write(b"class0/caf\xe9.jpg 0\nclass0/img0.jpg 0\n")
    json.dump({"a": 0, "b": 0}, open(f"{FX}/names_dup.json", "w"))
    shutil.copytree(run, f"{FX}/badrun")
    open(f"{FX}/badrun/config.yaml", "w").write("{{{ not yaml")
    os.makedirs(f"{FX}/dir/net.mindir")
    # space in a path
    shutil.copytree(f"{FX}/data/train", f"{FX}/my data")
    return run



# --------------------------------------------------------------------------- the cases: (group, id, what, kind, args)
F = "{FX}"
C = [
 # ---------------------------------------------------------------- train: values
 ("train", "lr-neg", "--lr -1", "train", ["--lr", "-1"]),
 ("train", "lr-text", "--lr abc", "train", ["--lr", "abc"]),
 ("train", "lr-nan", "--lr nan", "train", ["--lr", "nan"]),
 ("train", "lr-inf", "--lr inf", "train", ["--lr=inf"]),
 ("train", "max-epoch-0", "--max_epoch 0", "train", ["--max_epoch", "0"]),
 ("train", "max-epoch-float", "--max_epoch 1.5", "train", ["--max_epoch=1.5"]),
 ("train", "warmup-neg", "--warmup_epochs -3", "train", ["--warmup_epochs", "-3"]),
 ("train", "lr-epochs-text", "--lr_epochs a,b", "train", ["--lr_epochs", "a,b", "--lr_scheduler=multistep"]),
 ("train", "lr-epochs-neg", "--lr_epochs 0,-5", "train", ["--lr_epochs=0,-5"]),
 ("train", "num-classes-0", "--num_classes 0", "train", ["--num_classes", "0"]),
 ("train", "seed-neg", "--seed -1", "train", ["--seed", "-1"]),
 ("train", "seed-big", "--seed 4294967296", "train", ["--seed=4294967296"]),
 ("train", "one-class-smooth", "one class with label smoothing (--num_classes 1, one class folder)", "train",
  ["--num_classes=1", f"--data_dir={F}/one", "--label_smooth=1"]),
 ("train", "ckpt-interval-0", "--ckpt_interval 0", "train", ["--ckpt_interval", "0"]),
 ("train", "val-interval-0", "--val_interval 0", "train", ["--val_interval", "0", f"--val_data_dir={F}/data/val"]),
 ("train", "ckpt-save-max-0", "--ckpt_save_max 0", "train", ["--ckpt_save_max=0"]),
 ("train", "log-interval-0", "--log_interval 0", "train", ["--log_interval=0"]),
 ("train", "batch-0", "--per_batch_size 0", "train", ["--per_batch_size=0"]),
 ("train", "workers-neg", "--num_parallel_workers -1", "train", ["--num_parallel_workers=-1"]),
 ("train", "momentum-1", "--momentum 1", "train", ["--momentum=1"]),
 ("train", "wd-neg", "--weight_decay -1", "train", ["--weight_decay=-1"]),
 ("train", "loss-scale-0", "--loss_scale 0", "train", ["--loss_scale=0"]),
 ("train", "smooth-1", "--label_smooth_factor 1", "train", ["--label_smooth_factor=1"]),
 ("train", "ema-decay-2", "--ema_decay 2", "train", ["--ema_decay=2"]),
 ("train", "re-prob", "--re_prob 1.5", "train", ["--re_prob=1.5"]),
 ("train", "crop-pct", "--crop_pct 2", "train", ["--crop_pct=2"]),
 ("train", "crop-scale-0", "--crop_scale_min 0", "train", ["--crop_scale_min=0"]),
 ("train", "mixup-prob", "--mixup_prob -0.1", "train", ["--mixup_prob=-0.1"]),
 ("train", "tmax-neg", "--T_max -1", "train", ["--T_max=-1"]),
 ("train", "eta-min-neg", "--eta_min -1", "train", ["--eta_min=-1"]),
 ("train", "gamma-neg", "--lr_gamma -1", "train", ["--lr_gamma=-1"]),
 ("train", "image-size-0", "--image_size 0,0", "train", ["--image_size=0,0"]),
 ("train", "image-size-text", "--image_size abc", "train", ["--image_size=abc"]),
 ("train", "image-size-3", "--image_size 32,32,32", "train", ["--image_size=32,32,32"]),
 ("train", "bool-bad", "--label_smooth maybe", "train", ["--label_smooth=maybe"]),
 ("train", "ema-2", "--ema 2", "train", ["--ema=2"]),
 ("train", "arch-unknown", "--arch resnet50", "train", ["--arch=resnet50"]),
 ("train", "arch-typo", "--arch cspdarknet_tiy", "train", ["--arch=cspdarknet_tiy"]),
 ("train", "sched-typo", "--lr_scheduler cosine", "train", ["--lr_scheduler=cosine"]),
 ("train", "amp-bad", "--amp_level O1", "train", ["--amp_level=O1"]),
 ("train", "device-bad", "--device_target TPU", "train", ["--device_target=TPU"]),
 ("train", "device-gpu", "--device_target GPU on a CPU-only install", "train", ["--device_target", "GPU"]),
 ("train", "dist-no-launcher", "--is_distributed 1 without msrun / rank table", "train", ["--is_distributed", "1"]),
 ("train", "dist-bad", "--is_distributed 2", "train", ["--is_distributed=2"]),
 ("train", "alias", "--epochs 5 (another tool's name)", "train", ["--epochs=5"]),
 ("train", "dash", "--max-epoch 5 (dash instead of underscore)", "train", ["--max-epoch=5"]),
 ("train", "no-value", "--max_epoch without a value", "train", ["--max_epoch"]),
 ("train", "positional", "a stray positional argument", "train", ["oops"]),
 ("train", "cfg-missing", "--config_path to a missing file", "train", [f"--config_path={F}/nope.yaml"]),
 ("train", "cfg-folder", "--config_path to a folder", "train", [f"--config_path={F}/emptydir"]),
 ("train", "cfg-syntax", "--config_path with a YAML syntax error", "train", [f"--config_path={F}/bad.yaml"]),
 ("train", "cfg-unknown", "--config_path with an unknown key", "train", [f"--config_path={F}/unknown.yaml"]),
 ("train", "cfg-dup", "--config_path with a duplicate key", "train", [f"--config_path={F}/dup.yaml"]),
 ("train", "cfg-list", "--config_path holding a list, not a mapping", "train", [f"--config_path={F}/list.yaml"]),
 ("train", "cfg-latin1", "--config_path not UTF-8", "train", [f"--config_path={F}/latin1.yaml"]),
 ("train", "cfg-type", "--config_path with max_epoch: ten", "train", [f"--config_path={F}/badtype.yaml"]),
 ("train", "modelarts", "--enable_modelarts 1 outside ModelArts", "train", ["--enable_modelarts=1"]),
 # ---------------------------------------------------------------- train: paths
 ("train", "ckpt-path-file", "--ckpt_path under a regular file", "train", [f"--ckpt_path={F}/afile/out"]),
 ("train", "ckpt-path-ro", "--ckpt_path on a read-only location (/sys)", "train", ["--ckpt_path=/sys/cspd_out"]),
 ("train", "ckpt-path-proc", "--ckpt_path under /proc", "train", ["--ckpt_path=/proc/cspd_out"]),
 ("train", "data-missing", "--data_dir missing", "train", [f"--data_dir={F}/nope"]),
 ("train", "data-file", "--data_dir is a file", "train", [f"--data_dir={F}/afile"]),
 ("train", "data-noclass", "--data_dir without class folders", "train", [f"--data_dir={F}/noclass"]),
 ("train", "data-noimg", "--data_dir: class folders without images", "train", [f"--data_dir={F}/noimg"]),
 ("train", "data-corrupt", "--data_dir: only corrupt images", "train", [f"--data_dir={F}/corrupt"]),
 ("train", "data-3cls", "--data_dir has 3 classes, --num_classes 2", "train", [f"--data_dir={F}/data3"]),
 ("train", "batch-big", "--per_batch_size larger than the data", "train", ["--per_batch_size=64"]),
 ("train", "list-missing", "--data_list missing", "train", [f"--data_list={F}/nope.txt"]),
 ("train", "list-format", "--data_list line without a label", "train", [f"--data_list={F}/list_bad.txt"]),
 ("train", "list-label", "--data_list non-integer label", "train", [f"--data_list={F}/list_label.txt"]),
 ("train", "list-neg", "--data_list negative label", "train", [f"--data_list={F}/list_neg.txt"]),
 ("train", "list-empty", "--data_list lists no image", "train", [f"--data_list={F}/list_empty.txt"]),
 ("train", "val-missing", "--val_data_dir missing", "train", [f"--val_data_dir={F}/nope"]),
 ("train", "pretrained-missing", "--pretrained missing", "train", [f"--pretrained={F}/nope.ckpt"]),
 ("train", "pretrained-corrupt", "--pretrained truncated", "train", [f"--pretrained={F}/ck/trunc.ckpt"]),
 ("train", "pretrained-foreign", "--pretrained with foreign tensor names", "train", [f"--pretrained={F}/ck/foreign.ckpt"]),
 ("train", "pretrained-other-arch", "--pretrained of another arch (--arch cspdarknet53)", "train",
  [f"--pretrained={F}/ck/good.ckpt", "--arch=cspdarknet53", "--image_size=64,64"]),
 ("train", "resume-missing", "--resume missing", "train", [f"--resume={F}/nope"]),
 ("train", "resume-empty", "--resume a folder without checkpoints", "train", [f"--resume={F}/noresume"]),
 ("train", "resume-corrupt", "--resume a truncated file", "train", [f"--resume={F}/ck/trunc.ckpt"]),
 ("train", "resume-foreign", "--resume a checkpoint without training state", "train", [f"--resume={F}/ck/foreign.ckpt"]),
 ("train", "resume-arch", "--resume RUN --arch other (run folder unchanged)", "train", [f"--resume={F}/run", "--arch=cspdarknet53"]),
 ("train", "resume-classes", "--resume RUN --num_classes 3 (run folder unchanged)", "train", [f"--resume={F}/run", "--num_classes=3", "--max_epoch=3"]),
 ("train", "list-latin1", "--data_list naming a file that is not UTF-8", "train", [f"--data_list={F}/list_latin1.txt", f"--data_dir={F}/data/train"]),
 ("train", "pretrained-folder", "--pretrained is a folder", "train", [f"--pretrained={F}/ck"]),
 ("train", "resume-file-nonrun", "--resume a checkpoint outside a run folder, --ckpt_path unwritable", "train", [f"--resume={F}/ck/good.ckpt", f"--ckpt_path={F}/afile/x"]),
 ("train", "warmup-long", "--warmup_epochs 5 --max_epoch 1 (allowed, warning)", "train", ["--warmup_epochs=5"]),
 ("train", "interval-long", "--ckpt_interval 5 --max_epoch 1 (allowed, warning)", "train", ["--ckpt_interval=5"]),
 # ---------------------------------------------------------------- eval
 ("eval", "no-ckpt", "no --pretrained", "eval-raw", [f"--data_dir={F}/data/val"]),
 ("eval", "ckpt-missing", "--pretrained missing", "eval", [f"--pretrained={F}/nope.ckpt"]),
 ("eval", "ckpt-empty", "--pretrained empty file", "eval", [f"--pretrained={F}/ck/empty.ckpt"]),
 ("eval", "ckpt-random", "--pretrained random bytes", "eval", [f"--pretrained={F}/ck/random.ckpt"]),
 ("eval", "ckpt-trunc", "--pretrained truncated", "eval", [f"--pretrained={F}/ck/trunc.ckpt"]),
 ("eval", "ckpt-ext", "--pretrained unknown extension", "eval", [f"--pretrained={F}/ck/weights.txt"]),
 ("eval", "ckpt-pth", "--pretrained a .pth file (torch missing or garbage)", "eval", [f"--pretrained={F}/ck/model.pth"]),
 ("eval", "ckpt-safetensors", "--pretrained corrupt .safetensors", "eval", [f"--pretrained={F}/ck/bad.safetensors"]),
 ("eval", "ckpt-foreign", "--pretrained foreign tensor names", "eval", [f"--pretrained={F}/ck/foreign.ckpt"]),
 ("eval", "folder-empty", "--pretrained empty folder", "eval", [f"--pretrained={F}/emptydir"]),
 ("eval", "folder-one-corrupt", "folder: one good, one truncated checkpoint", "eval", [f"--pretrained={F}/mixed"]),
 ("eval", "folder-one-foreign", "folder: one good, one unloadable checkpoint", "eval", [f"--pretrained={F}/mixed_foreign"]),
 ("eval", "folder-all-bad", "folder: every checkpoint corrupt", "eval", [f"--pretrained={F}/allbad"]),
 ("eval", "data-missing", "--data_dir missing", "eval", [f"--data_dir={F}/nope"]),
 ("eval", "data-3cls", "--data_dir with more classes than the model", "eval", [f"--data_dir={F}/data3"]),
 ("eval", "arch-explicit", "--arch cspdarknet53 against a tiny checkpoint", "eval", ["--arch=cspdarknet53"]),
 ("eval", "classes-explicit", "--num_classes 5 against a 2-class checkpoint", "eval", ["--num_classes=5"]),
 ("eval", "log-path-file", "--log_path under a regular file", "eval", [f"--log_path={F}/afile/out"]),
 ("eval", "log-path-ro", "--log_path read-only (/sys)", "eval", ["--log_path=/sys/cspd_out"]),
 ("eval", "result-file", "--result_file under a regular file", "eval", [f"--result_file={F}/afile/r.json"]),
 ("eval", "result-ro", "--result_file read-only (/proc)", "eval", ["--result_file=/proc/cspd/r.json"]),
 ("eval", "result-dir", "--result_file is a folder", "eval", [f"--result_file={F}/emptydir"]),
 ("eval", "device-gpu", "--device_target GPU", "eval", ["--device_target=GPU"]),
 ("eval", "dist", "--is_distributed 1 without launcher", "eval", ["--is_distributed=1"]),
 ("eval", "batch-0", "--per_batch_size 0", "eval", ["--per_batch_size=0"]),
 ("eval", "run-config-corrupt", "a checkpoint whose run folder has a corrupt config.yaml (works, exit 0)", "eval", [f"--pretrained={F}/badrun/ckpt_0/0-2_2.ckpt"]),
 ("eval", "list-latin1", "--data_list not UTF-8", "eval", [f"--data_list={F}/list_latin1.txt", f"--data_dir={F}/data/val"]),
 # ---------------------------------------------------------------- export
 ("export", "no-ckpt", "no --ckpt_file", "export-raw", ["--file_name={OUT}/net"]),
 ("export", "ckpt-missing", "--ckpt_file missing", "export", [f"--ckpt_file={F}/nope.ckpt"]),
 ("export", "ckpt-folder", "--ckpt_file is a folder", "export", [f"--ckpt_file={F}/ck"]),
 ("export", "ckpt-corrupt", "--ckpt_file truncated", "export", [f"--ckpt_file={F}/ck/trunc.ckpt"]),
 ("export", "ckpt-foreign", "--ckpt_file foreign tensor names", "export", [f"--ckpt_file={F}/ck/foreign.ckpt"]),
 ("export", "air-cpu", "--file_format AIR on CPU", "export", ["--file_format=AIR"]),
 ("export", "format-bad", "--file_format PNG", "export", ["--file_format=PNG"]),
 ("export", "name-empty", "--file_name ''", "export", ["--file_name="]),
 ("export", "name-file", "--file_name under a regular file", "export", [f"--file_name={F}/afile/net"]),
 ("export", "name-ro", "--file_name read-only (/sys)", "export", ["--file_name=/sys/cspd/net"]),
 ("export", "name-proc", "--file_name under /proc", "export", ["--file_name=/proc/net_cspd"]),
 ("export", "name-dir", "--file_name naming an existing folder (net.mindir/)", "export", [f"--file_name={F}/dir/net"]),
 ("export", "width-neg", "--width -1", "export", ["--width=-1"]),
 ("export", "batch-0", "--export_batch_size 0", "export", ["--export_batch_size=0"]),
 ("export", "arch-explicit", "--arch cspdarknet53 against a tiny checkpoint", "export", ["--arch=cspdarknet53"]),
 ("export", "device-gpu", "--device_target GPU", "export", ["--device_target=GPU"]),
 # ---------------------------------------------------------------- predict
 ("predict", "no-ckpt", "no --ckpt_file", "predict-raw", [f"--image_path={F}/imgs"]),
 ("predict", "ckpt-missing", "--ckpt_file missing", "predict", [f"--ckpt_file={F}/nope.ckpt"]),
 ("predict", "ckpt-corrupt", "--ckpt_file truncated", "predict", [f"--ckpt_file={F}/ck/trunc.ckpt"]),
 ("predict", "no-image", "no --image_path", "predict", ["--image_path="]),
 ("predict", "image-missing", "--image_path missing", "predict", [f"--image_path={F}/nope.jpg"]),
 ("predict", "image-folder-empty", "--image_path folder without images", "predict", [f"--image_path={F}/noimgs"]),
 ("predict", "images-unusable", "--image_path with only unusable images", "predict", [f"--image_path={F}/badimgs"]),
 ("predict", "images-some-bad", "--image_path with one good, two unusable (skipped, exit 0)", "predict",
  [f"--image_path={F}/imgs,{F}/badimgs"]),
 ("predict", "names-missing", "--class_names_file missing", "predict", [f"--class_names_file={F}/nope.txt"]),
 ("predict", "names-count", "--class_names_file with 3 names for 2 classes", "predict", [f"--class_names_file={F}/names3.txt"]),
 ("predict", "names-latin1", "--class_names_file not UTF-8", "predict", [f"--class_names_file={F}/names_latin1.txt"]),
 ("predict", "names-json", "--class_names_file bad JSON", "predict", [f"--class_names_file={F}/names_bad.json"]),
 ("predict", "names-empty", "--class_names_file empty", "predict", [f"--class_names_file={F}/names_empty.txt"]),
 ("predict", "names-index-bad", "--class_names_file a class index with repeated indices", "predict", [f"--class_names_file={F}/names_dup.json"]),
 ("predict", "topk-0", "--topk 0", "predict", ["--topk=0"]),
 ("predict", "result-file", "--result_file under a regular file", "predict", [f"--result_file={F}/afile/p.json"]),
 ("predict", "result-ro", "--result_file read-only (/sys)", "predict", ["--result_file=/sys/cspd/p.json"]),
 # ---------------------------------------------------------------- postprocess
 ("postprocess", "no-args", "no arguments", "post", []),
 ("postprocess", "result-missing", "--result_path missing", "post", [f"--result_path={F}/nope", f"--label_path={F}/labels.json"]),
 ("postprocess", "result-file", "--result_path is a file", "post", [f"--result_path={F}/afile", f"--label_path={F}/labels.json"]),
 ("postprocess", "label-missing", "--label_path missing", "post", [f"--result_path={F}/res", f"--label_path={F}/nope.json"]),
 ("postprocess", "label-dir", "--label_path is a folder", "post", [f"--result_path={F}/res", f"--label_path={F}/emptydir"]),
 ("postprocess", "label-json", "--label_path not JSON", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_bad.json"]),
 ("postprocess", "label-latin1", "--label_path not UTF-8", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_latin1.json"]),
 ("postprocess", "label-list", "--label_path a JSON list", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_list.json"]),
 ("postprocess", "label-neg", "negative label", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_neg.json"]),
 ("postprocess", "label-str", "label is a string", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_str.json"]),
 ("postprocess", "label-range", "label 5 with --num_classes 2", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_big.json", "--num_classes=2"]),
 ("postprocess", "label-twice", "two labels for one result file", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_twice.json"]),
 ("postprocess", "no-match", "no result file has a label", "post", [f"--result_path={F}/res", f"--label_path={F}/labels_nomatch.json"]),
 ("postprocess", "size-odd", "result file of 7 bytes", "post", [f"--result_path={F}/res_odd", f"--label_path={F}/labels.json"]),
 ("postprocess", "size-mixed", "result files of different sizes", "post", [f"--result_path={F}/res_mixed", f"--label_path={F}/labels.json"]),
 ("postprocess", "ambiguous", "32 bytes per row, label 0: float32 x 8 or float16 x 16", "post", [f"--result_path={F}/res_amb", f"--label_path={F}/labels_amb.json"]),
 ("postprocess", "dtype-bad", "--dtype float64", "post", [f"--result_path={F}/res", f"--label_path={F}/labels.json", "--dtype=float64"]),
 ("postprocess", "classes-neg", "--num_classes -1", "post", [f"--result_path={F}/res", f"--label_path={F}/labels.json", "--num_classes=-1"]),
 ("postprocess", "classes-text", "--num_classes abc", "post", [f"--result_path={F}/res", f"--label_path={F}/labels.json", "--num_classes=abc"]),
 ("postprocess", "classes-wrong", "--num_classes 3 for rows of 2 float32", "post", [f"--result_path={F}/res", f"--label_path={F}/labels.json", "--num_classes=3"]),
 ("postprocess", "unknown-flag", "--bogus", "post", [f"--result_path={F}/res", f"--label_path={F}/labels.json", "--bogus"]),
 # ---------------------------------------------------------------- label tool
 ("label", "no-args", "no arguments", "label", []),
 ("label", "missing", "--img_path missing", "label", [f"--img_path={F}/nope", "--output={OUT}/l.json"]),
 ("label", "file", "--img_path is a file", "label", [f"--img_path={F}/afile", "--output={OUT}/l.json"]),
 ("label", "no-classes", "--img_path without class folders", "label", [f"--img_path={F}/emptydir", "--output={OUT}/l.json"]),
 ("label", "empty-classes", "class folders without files", "label", [f"--img_path={F}/lab_empty", "--output={OUT}/l.json"]),
 ("label", "duplicate", "one file name in two class folders", "label", [f"--img_path={F}/lab", "--output={OUT}/l.json"]),
 ("label", "out-file", "--output under a regular file", "label", [f"--img_path={F}/lab_ok", f"--output={F}/afile/l.json"]),
 ("label", "out-dir", "--output is a folder", "label", [f"--img_path={F}/lab_ok", f"--output={F}/emptydir"]),
 ("label", "out-ro", "--output read-only (/sys)", "label", [f"--img_path={F}/lab_ok", "--output=/sys/cspd/l.json"]),
 ("label", "non-utf8", "a file name that is not UTF-8 (works, exit 0)", "label", [f"--img_path={F}/lab_nonutf8", "--output={OUT}/l.json"]),
 ("label", "unknown-flag", "--bogus", "label", [f"--img_path={F}/lab_ok", "--bogus"]),
 # ---------------------------------------------------------------- scripts
 ("scripts", "train-few", "run_standalone_train.sh with no arguments", "sh", ["run_standalone_train.sh"]),
 ("scripts", "train-device", "run_standalone_train.sh x DATA", "sh", ["run_standalone_train.sh", "x", f"{F}/data/train"]),
 ("scripts", "train-data", "run_standalone_train.sh 0 MISSING", "sh", ["run_standalone_train.sh", "0", f"{F}/nope"]),
 ("scripts", "train-ckpt", "run_standalone_train.sh 0 DATA missing.ckpt", "sh", ["run_standalone_train.sh", "0", f"{F}/data/train", f"{F}/nope.ckpt"]),
 ("scripts", "train-stray", "run_standalone_train.sh 0 DATA --max_epoch=1 oops", "sh", ["run_standalone_train.sh", "0", f"{F}/data/train", "--max_epoch=1", "oops"]),
 ("scripts", "train-space-flags", "run_standalone_train.sh 0 DATA --key value flags (DRY_RUN)", "sh-dry",
  ["run_standalone_train.sh", "0", f"{F}/data/train", "--image_size", "32,32", "--max_epoch", "1"]),
 ("scripts", "train-bad-value", "run_standalone_train.sh 0 DATA --lr -1 (train.py's error, no run folder kept)", "sh",
  ["run_standalone_train.sh", "0", f"{F}/data/train", "--lr", "-1"]),
 ("scripts", "msrun-space-flags", "run_distribute_train_msrun.sh 2 DATA CPU --image_size 32,32 (DRY_RUN)", "sh-dry",
  ["run_distribute_train_msrun.sh", "2", f"{F}/data/train", "CPU", "--image_size", "32,32"]),
 ("scripts", "msrun-space-value", "msrun launcher, --val_data_dir 'my data' (a space, DRY_RUN)", "sh-dry",
  ["run_distribute_train_msrun.sh", "2", f"{F}/data/train", "CPU", "--val_data_dir", f"{F}/my data"]),
 ("scripts", "msrun-num", "run_distribute_train_msrun.sh 0 DATA CPU", "sh", ["run_distribute_train_msrun.sh", "0", f"{F}/data/train", "CPU"]),
 ("scripts", "msrun-target", "run_distribute_train_msrun.sh 2 DATA TPU", "sh", ["run_distribute_train_msrun.sh", "2", f"{F}/data/train", "TPU"]),
 ("scripts", "eval-few", "run_eval.sh 0 DATA", "sh", ["run_eval.sh", "0", f"{F}/data/val"]),
 ("scripts", "eval-ckpt", "run_eval.sh 0 DATA missing.ckpt", "sh", ["run_eval.sh", "0", f"{F}/data/val", f"{F}/nope.ckpt"]),
 ("scripts", "eval-space-flags", "run_eval.sh 0 DATA CKPT --per_batch_size 2 (DRY_RUN)", "sh-dry",
  ["run_eval.sh", "0", f"{F}/data/val", f"{F}/ck/good.ckpt", "--per_batch_size", "2"]),
 ("scripts", "ranktable-missing", "run_distribute_train.sh missing.json DATA", "sh", ["run_distribute_train.sh", f"{F}/nope.json", f"{F}/data/train"]),
 ("scripts", "ranktable-bad", "run_distribute_train.sh with a non-JSON rank table", "sh", ["run_distribute_train.sh", f"{F}/bad.yaml", f"{F}/data/train"]),
 ("scripts", "infer-few", "run_infer_310.sh with no arguments", "sh", ["run_infer_310.sh"]),
 ("scripts", "infer-ext", "run_infer_310.sh net.pb DATA", "sh", ["run_infer_310.sh", f"{F}/afile", f"{F}/data/val"]),
 ("scripts", "infer-model", "run_infer_310.sh missing.onnx DATA", "sh", ["run_infer_310.sh", f"{F}/nope.onnx", f"{F}/data/val"]),
 ("scripts", "infer-data", "run_infer_310.sh MODEL missing-folder", "sh", ["run_infer_310.sh", f"{F}/ck/good.ckpt", f"{F}/nope"]),
]


# --------------------------------------------------------------------------- which test covers each case
# "unit::" tests/unit/test_validation.py, "e2e::" tests/e2e/test_bad_input_and_storage_faults.py, "old::" an existing test file
U = "unit::"
E = "e2e::"
BV = E + "test_bad_train_value_is_one_error_line_and_creates_nothing"
UV = U + "test_bad_values_are_refused_at_load_naming_the_key"
UC = U + "test_bad_config_file_is_refused_naming_it"
OC = "old::tests/unit/test_config.py::test_out_of_range_values_are_errors_naming_the_key"
WT = "old::tests/unit/test_config.py::test_wrong_type_on_cli"
TB = "old::tests/e2e/test_train.py::test_bad_input_is_a_clear_error"
TS = "old::tests/e2e/test_scripts.py::"
SO = "survey only"
M = {
 "train/lr-neg": [BV, UV, OC], "train/lr-text": [UV, WT], "train/lr-nan": [UV, WT], "train/lr-inf": [UV],
 "train/max-epoch-0": [BV, UV, OC], "train/max-epoch-float": [UV, WT], "train/warmup-neg": [BV, UV, OC],
 "train/lr-epochs-text": [BV, UV, OC], "train/lr-epochs-neg": [UV], "train/num-classes-0": [BV, UV, OC],
 "train/seed-neg": [BV, UV, OC], "train/seed-big": [UV], "train/one-class-smooth": [BV, UV],
 "train/ckpt-interval-0": [BV, UV, OC], "train/val-interval-0": [BV, UV, OC], "train/ckpt-save-max-0": [UV],
 "train/log-interval-0": [UV, OC], "train/batch-0": [UV, OC], "train/workers-neg": [UV],
 "train/momentum-1": [UV, OC], "train/wd-neg": [UV], "train/loss-scale-0": [UV], "train/smooth-1": [UV, OC],
 "train/ema-decay-2": [UV], "train/re-prob": [UV, OC], "train/crop-pct": [UV, OC], "train/crop-scale-0": [UV, OC],
 "train/mixup-prob": [UV], "train/tmax-neg": [UV], "train/eta-min-neg": [UV], "train/gamma-neg": [UV],
 "train/image-size-0": [UV, OC], "train/image-size-text": [UV, OC], "train/image-size-3": [UV],
 "train/bool-bad": [UV], "train/ema-2": [UV], "train/arch-unknown": [UV], "train/arch-typo": [UV],
 "train/sched-typo": [UV], "train/amp-bad": [UV], "train/device-bad": [UV],
 "train/device-gpu": [E + "test_device_and_launcher_errors_fail_before_a_run_folder[gpu-on-cpu-only]"],
 "train/dist-no-launcher": [E + "test_device_and_launcher_errors_fail_before_a_run_folder[distributed-without-launcher]"],
 "train/dist-bad": [UV], "train/alias": [UV], "train/dash": [UV], "train/no-value": [UV], "train/positional": [UV],
 "train/cfg-missing": [UC + "[missing]"], "train/cfg-folder": [UC + "[folder]"], "train/cfg-syntax": [UC + "[syntax]"],
 "train/cfg-unknown": [UC + "[unknown-key]"], "train/cfg-dup": [UC + "[duplicate-key]"], "train/cfg-list": [UC + "[list]"],
 "train/cfg-latin1": [UC + "[not-utf8]"], "train/cfg-type": [UC + "[wrong-type]"],
 "train/modelarts": ["old::tests/e2e/test_modelarts_train.py::test_missing_moxing_is_one_clear_error"],
 "train/ckpt-path-file": [E + "test_unwritable_ckpt_path[under_a_file]", U + "test_output_dir_under_a_regular_file"],
 "train/ckpt-path-ro": [E + "test_unwritable_ckpt_path[read_only]", U + "test_output_dir_on_a_location_not_even_root_can_write"],
 "train/ckpt-path-proc": [U + "test_output_dir_on_a_location_not_even_root_can_write"],
 "train/data-missing": [TB], "train/data-file": [SO],
 "train/data-noclass": ["old::tests/unit/test_dataset.py::test_empty_root_raises"],
 "train/data-noimg": [E + "test_launcher_removes_the_run_folder_of_a_job_that_refused_its_input",
                      "old::tests/unit/test_dataset.py::test_root_with_only_empty_class_folders_raises"],
 "train/data-corrupt": ["old::tests/unit/test_dataset.py::test_nothing_usable_raises"], "train/data-3cls": [TB],
 "train/batch-big": ["old::tests/unit/test_dataset.py::test_bad_options_raise_dataset_error"], "train/list-missing": [SO],
 "train/list-format": ["old::tests/unit/test_dataset.py::test_data_list_bad_line_names_file_and_line"],
 "train/list-label": [SO], "train/list-neg": [SO], "train/list-empty": [SO], "train/list-latin1": [SO],
 "train/val-missing": [SO], "train/pretrained-missing": [SO], "train/pretrained-folder": [SO],
 "train/pretrained-corrupt": ["old::tests/unit/test_checkpoint.py::test_unreadable_checkpoints_raise_clear_errors"],
 "train/pretrained-foreign": [SO], "train/pretrained-other-arch": ["old::tests/unit/test_checkpoint.py::test_wrong_arch_is_an_error"],
 "train/resume-missing": [TB], "train/resume-empty": [SO], "train/resume-corrupt": [SO], "train/resume-foreign": [SO],
 "train/resume-file-nonrun": [SO],
 "train/resume-arch": [E + "test_rejected_resume_leaves_the_run_folder_byte_identical[other-arch]"],
 "train/resume-classes": [E + "test_rejected_resume_leaves_the_run_folder_byte_identical[other-num-classes]"],
 "train/warmup-long": [E + "test_odd_but_legitimate_values_run_with_warnings", U + "test_odd_but_legitimate_values_load_with_a_warning"],
 "train/interval-long": [E + "test_odd_but_legitimate_values_run_with_warnings", U + "test_odd_but_legitimate_values_load_with_a_warning"],
 "eval/no-ckpt": ["old::tests/unit/test_entry_errors.py::test_eval_checkpoint_errors[none]"],
 "eval/ckpt-missing": ["old::tests/unit/test_entry_errors.py::test_eval_checkpoint_errors[missing]"],
 "eval/ckpt-empty": ["old::tests/unit/test_checkpoint.py::test_unreadable_checkpoints_raise_clear_errors[empty]"],
 "eval/ckpt-random": ["old::tests/unit/test_entry_errors.py::test_eval_checkpoint_errors[garbage]"],
 "eval/ckpt-trunc": [SO + " (as random bytes)"],
 "eval/ckpt-ext": ["old::tests/unit/test_checkpoint.py::test_unreadable_checkpoints_raise_clear_errors[extension]"],
 "eval/ckpt-pth": [SO], "eval/ckpt-safetensors": [SO],
 "eval/ckpt-foreign": [E + "test_eval_of_a_checkpoint_without_cspdarknet53_weights_leaves_no_run_folder"],
 "eval/folder-empty": ["old::tests/unit/test_entry_errors.py::test_eval_checkpoint_errors[empty_folder]"],
 "eval/folder-one-corrupt": [E + "test_eval_folder_with_bad_checkpoints_keeps_the_results_of_the_others"],
 "eval/folder-one-foreign": [E + "test_eval_folder_with_bad_checkpoints_keeps_the_results_of_the_others"],
 "eval/folder-all-bad": [SO], "eval/data-missing": [SO], "eval/data-3cls": [SO],
 "eval/arch-explicit": [E + "test_eval_checkpoint_that_does_not_fit_the_asked_network_leaves_no_run_folder"],
 "eval/classes-explicit": [SO + " (the check next to --arch's)"],
 "eval/log-path-file": [E + "test_unwritable_eval_outputs[under_a_file]"], "eval/log-path-ro": [E + "test_unwritable_eval_outputs[read_only]"],
 "eval/result-file": [E + "test_unwritable_eval_outputs[under_a_file]"], "eval/result-ro": [E + "test_unwritable_eval_outputs[read_only]"],
 "eval/result-dir": [U + "test_output_checks_create_nothing"],
 "eval/device-gpu": [SO + " (train.py's: E test_device_and_launcher_errors_fail_before_a_run_folder)"],
 "eval/dist": [SO + " (train.py's: E test_device_and_launcher_errors_fail_before_a_run_folder)"],
 "eval/batch-0": [UV], "eval/run-config-corrupt": [SO], "eval/list-latin1": [SO],
 "export/no-ckpt": ["old::tests/e2e/test_export.py::test_cli_checkpoint_errors"],
 "export/ckpt-missing": ["old::tests/e2e/test_export.py::test_cli_checkpoint_errors"],
 "export/ckpt-folder": [SO], "export/ckpt-corrupt": [SO], "export/ckpt-foreign": [SO],
 "export/air-cpu": ["old::tests/e2e/test_export.py::test_cli_air_off_ascend_is_refused_before_any_work"],
 "export/format-bad": [UV], "export/name-empty": [SO],
 "export/name-file": [E + "test_unwritable_export_and_predict_outputs[under_a_file]"],
 "export/name-ro": [E + "test_unwritable_export_and_predict_outputs[read_only]"],
 "export/name-proc": [U + "test_output_dir_on_a_location_not_even_root_can_write"],
 "export/name-dir": [U + "test_output_checks_create_nothing"],
 "export/width-neg": [UV], "export/batch-0": [UV], "export/arch-explicit": [SO], "export/device-gpu": [SO],
 "predict/no-ckpt": ["old::tests/unit/test_entry_errors.py::test_predict_user_errors"],
 "predict/ckpt-missing": ["old::tests/unit/test_entry_errors.py::test_predict_user_errors"], "predict/ckpt-corrupt": [SO],
 "predict/no-image": ["old::tests/unit/test_entry_errors.py::test_predict_user_errors"],
 "predict/image-missing": ["old::tests/unit/test_entry_errors.py::test_predict_user_errors"], "predict/image-folder-empty": [SO],
 "predict/images-unusable": [E + "test_predict_with_only_unusable_images_names_the_users_files"],
 "predict/images-some-bad": ["old::tests/e2e/test_predict.py (the broken.jpg of its folder run)"],
 "predict/names-missing": [SO], "predict/names-count": [SO], "predict/names-latin1": [SO],
 "predict/names-json": [SO], "predict/names-empty": [SO],
 "predict/names-index-bad": ["old::tests/unit/test_postprocess.py::test_load_class_names_sources"],
 "predict/topk-0": [UV],
 "predict/result-file": [E + "test_unwritable_export_and_predict_outputs[under_a_file]"],
 "predict/result-ro": [E + "test_unwritable_export_and_predict_outputs[read_only]"],
}
PP = E + "test_postprocess_errors_are_one_line"
for k, t in {"no-args": "no-args", "result-file": "result-is-file", "result-missing": "result-missing", "label-dir": "label-is-dir",
             "label-latin1": "label-not-utf8", "label-list": "label-list", "dtype-bad": "dtype", "classes-neg": "classes-negative",
             "classes-text": "classes-text", "classes-wrong": "wrong-classes"}.items():
    M["postprocess/" + k] = [f"{PP}[{t}]"]
for k in ("label-missing", "label-neg", "no-match", "size-odd", "unknown-flag"):
    M["postprocess/" + k] = [SO]
for k in ("label-range", "size-mixed", "label-json", "label-str", "label-twice"):
    M["postprocess/" + k] = ["old::tests/unit/test_postprocess.py::test_malformed_inputs_exit_2_naming_the_file"]
M["postprocess/ambiguous"] = ["old::tests/unit/test_postprocess.py::test_resolve_layout_rules"]
LT = E + "test_label_tool_errors_are_one_line"
for k, t in {"no-args": "no-args", "missing": "missing", "file": "file", "duplicate": "duplicate", "out-file": "output-under-file",
             "out-dir": "output-is-dir", "out-ro": "output-read-only", "unknown-flag": "unknown-flag"}.items():
    M["label/" + k] = [f"{LT}[{t}]"]
M["label/no-classes"] = ["old::tests/unit/test_postprocess.py::test_label_script_errors"]
M["label/empty-classes"] = ["old::tests/unit/test_postprocess.py::test_label_script_errors"]
M["label/non-utf8"] = [E + "test_label_tool_takes_file_names_that_are_not_utf8"]
US = E + "test_launcher_usage_errors_exit_2"
M.update({
 "scripts/train-few": [US, TS + "test_too_few_arguments"], "scripts/train-device": [TS + "test_other_argument_errors"],
 "scripts/train-data": [TS + "test_missing_data_dir"], "scripts/train-ckpt": [TS + "test_other_argument_errors"],
 "scripts/train-stray": [E + "test_launchers_refuse_bad_flags_before_a_run_folder[stray-word]", TS + "test_other_argument_errors"],
 "scripts/train-space-flags": [E + "test_launchers_forward_both_flag_styles_and_values_with_spaces[standalone]"],
 "scripts/train-bad-value": [E + "test_launchers_refuse_bad_flags_before_a_run_folder[train-value]"],
 "scripts/msrun-space-flags": [E + "test_launchers_forward_both_flag_styles_and_values_with_spaces[msrun]"],
 "scripts/msrun-space-value": [E + "test_launchers_forward_both_flag_styles_and_values_with_spaces[msrun]"],
 "scripts/msrun-num": [US, TS + "test_other_argument_errors"], "scripts/msrun-target": [TS + "test_other_argument_errors"],
 "scripts/eval-few": [TS + "test_too_few_arguments"], "scripts/eval-ckpt": [US, TS + "test_other_argument_errors"],
 "scripts/eval-space-flags": [E + "test_launchers_forward_both_flag_styles_and_values_with_spaces[eval]"],
 "scripts/ranktable-missing": [US, TS + "test_bad_rank_table"], "scripts/ranktable-bad": [TS + "test_bad_rank_table"],
 "scripts/infer-few": [US, "old::tests/e2e/test_cpp_infer.py::test_run_infer_310_usage_and_engine_errors"],
 "scripts/infer-ext": ["old::tests/e2e/test_cpp_infer.py::test_run_infer_310_usage_and_engine_errors"],
 "scripts/infer-model": [US], "scripts/infer-data": [SO],
})


# --------------------------------------------------------------------------- running
def _tree(path):
    out = []
    for root, _, files in os.walk(path):
        for f in sorted(files):
            fp = os.path.join(root, f)
            with open(fp, "rb") as fh:
                out.append((fp, fh.read()))
    return sorted(out)


def run_cases(repo, work, only=()):
    FX = os.path.join(work, "fx")
    run = make_fixtures(repo, FX)
    py = sys.executable
    ck = f"{FX}/ck/good.ckpt"
    train = ["--arch=cspdarknet_tiny", "--image_size=32,32", f"--data_dir={FX}/data/train", "--num_classes=2",
             "--per_batch_size=4", "--max_epoch=1", "--warmup_epochs=0", "--num_parallel_workers=1", "--ckpt_path={OUT}"]
    rows = []
    for group, cid, what, kind, args in C:
        if only and f"{group}/{cid}" not in only and group not in only:
            continue
        out = tempfile.mkdtemp(prefix="case_", dir=work)
        sub = lambda a: [x.replace("{FX}", FX).replace("{OUT}", out) for x in a]  # noqa: E731
        env = dict(os.environ, PYTHON=py, OUTPUT_ROOT=out)
        env.pop("GLOG_v", None)  # as a user runs it
        base = {"train": [py, f"{repo}/train.py"] + sub(train),
                "eval": [py, f"{repo}/eval.py", f"--pretrained={ck}", f"--data_dir={FX}/data/val", "--image_size=32,32",
                         "--per_batch_size=2", f"--log_path={out}"],
                "eval-raw": [py, f"{repo}/eval.py", f"--log_path={out}"],
                "export": [py, f"{repo}/export.py", f"--ckpt_file={ck}", f"--file_name={out}/net"],
                "export-raw": [py, f"{repo}/export.py"],
                "predict": [py, f"{repo}/predict.py", f"--ckpt_file={ck}", f"--image_path={FX}/imgs"],
                "predict-raw": [py, f"{repo}/predict.py"],
                "post": [py, f"{repo}/postprocess.py"], "label": [py, f"{repo}/create_imagenet2012_label.py"]}
        if kind in ("sh", "sh-dry"):
            a = sub(args)
            cmd = ["bash", f"{repo}/scripts/{a[0]}"] + a[1:]
            if kind == "sh-dry":
                env["DRY_RUN"] = "1"
        else:
            cmd = base[kind] + sub(args)
        before = _tree(run) if "resume" in cid else None
        t0 = time.time()
        try:
            p = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=300, errors="replace")
            rc, so, se = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            rc, so, se = "timeout", "", ""
        created = sorted(os.path.relpath(os.path.join(r, f), out) for r, ds, fs in os.walk(out) for f in fs + ds)
        lines = se.splitlines()
        err = [ln for ln in lines if ln.startswith("error:") or "[ERROR]" in ln or ": error:" in ln]
        idx = lines.index(err[0]) if err else len(lines)
        row = dict(group=group, id=cid, what=what, rc=rc, seconds=round(time.time() - t0, 1),
                   traceback="Traceback (most recent call last)" in se + so, created=created[:20],
                   error_line=(err[0] if err else ""), noise_before=[ln for ln in lines[:idx] if ln.strip()][:5],
                   last_line=(lines[-1] if lines else ""), stderr=se[-4000:], fx=FX)
        if before is not None:
            row["run_unchanged"] = before == _tree(run)
        rows.append(row)
        print(f"{group}/{cid}: rc={rc} tb={row['traceback']} left={len(created)} | {row['error_line'][:120]}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------- the table
def _short(text, fx, n=170):
    text = re.sub(re.escape(os.path.dirname(fx)) + r"/case_\w+", "OUT", text.replace(fx, "FX")).replace("|", "\\|")
    return text if len(text) <= n else text[:n - 3] + "..."


def _now(r):
    if r["rc"] == 0:
        return "runs (exit 0)" + ("; " + _short(r["error_line"] or "", r["fx"]) if r["error_line"] else "")
    if r["traceback"]:
        return f"**traceback**, exit {r['rc']}"
    line = r["error_line"] or r["last_line"]
    out = f"exit {r['rc']}: `{_short(line, r['fx'])}`"
    if r["noise_before"]:
        out += " (after other stderr lines)"
    return out


def _noise(lines):
    """What the lines before the error line were: MindSpore's log, or something else (a usage text)."""
    if any("ME(" in ln or "Load dynamic library" in ln or "mindspore" in ln.lower() for ln in lines):
        return "MindSpore log lines before it"
    return "usage text before it"


def _before(r):
    if r is None:
        return "(not run)"
    parts = []
    if r["traceback"]:
        exc = [ln for ln in r["stderr"].splitlines() if ln and not ln.startswith(" ")][-1:]
        parts.append("traceback" + (f" ({_short(exc[0].split(':')[0], r['fx'], 40)})" if exc else ""))
    elif r["rc"] == 0:
        parts.append("accepted (exit 0)")
    elif r["error_line"]:
        parts.append(f"exit {r['rc']}: `{_short(r['error_line'], r['fx'], 90)}`")
    else:
        parts.append(f"exit {r['rc']}, no error line on stderr")
    if r["created"] and r["rc"] != 0:
        parts.append("output folder left")
    if r.get("run_unchanged") is False:
        parts.append("**run folder rewritten**")
    if r["noise_before"] and r["rc"] != 0 and not r["traceback"]:
        parts.append(_noise(r["noise_before"]))
    elif r["traceback"] and any("Load dynamic library" in ln or "ME(" in ln for ln in r["stderr"].splitlines()[:3]):
        parts.append("MindSpore log lines before it")
    return "; ".join(parts)


def _tests(key):
    out = []
    for t in M.get(key, ["survey only"]):
        kind, _, name = t.partition("::")
        out.append({"unit": "U: ", "e2e": "E: ", "old": ""}.get(kind, "") + (name or kind))
    return "<br>".join(out)


TITLES = {"train": "train.py", "eval": "eval.py", "export": "export.py", "predict": "predict.py",
          "postprocess": "postprocess.py", "label": "create_imagenet2012_label.py", "scripts": "scripts/*.sh"}


def markdown(rows, before):
    prior = {(r["group"], r["id"]): r for r in before}
    out = []
    for group in TITLES:
        grp = [r for r in rows if r["group"] == group]
        if not grp:
            continue
        out.append(f"\n### {TITLES[group]} ({len(grp)})\n")
        out.append("| # | input | now | at de36ff1 | test |")
        out.append("|---|---|---|---|---|")
        for i, r in enumerate(grp, 1):
            out.append(f"| {i} | {r['what'].replace('|', '/')} | {_now(r)} | {_before(prior.get((r['group'], r['id'])))} "
                       f"| {_tests(r['group'] + '/' + r['id'])} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=REPO)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--from", dest="from_json", help="results to tabulate (instead of running)")
    ap.add_argument("--before", help="results of the old checkout, for the 'at de36ff1' column")
    ap.add_argument("--markdown", help="write the tables here (between the survey markers of an existing file)")
    ap.add_argument("--work", help="scratch folder (default: a temporary one)")
    ap.add_argument("only", nargs="*", help="group or group/id to run")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)
    else:
        work = args.work or tempfile.mkdtemp(prefix="error_survey_")
        rows = run_cases(os.path.abspath(args.repo), work, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        before = []
        if args.before:
            with open(args.before) as f:
                before = json.load(f)
        table = markdown(rows, before)
        begin, end = "<!-- survey begin -->", "<!-- survey end -->"
        text = open(args.markdown).read() if os.path.exists(args.markdown) else f"{begin}\n{end}\n"
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(args.markdown, "w") as f:
            f.write(head + begin + "\n" + table + end + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
