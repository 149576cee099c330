"""One MindSpore conv (batch 4, 256 -> 256 channels, 28 px) at 1 kernel thread: CPU ms and GFLOP per CPU-second
under the oneDNN ISA in the environment.

    ONEDNN_MAX_CPU_ISA=AVX2 python research/isa_conv.py 3        # 3x3: im2col + JIT sgemm
    ONEDNN_MAX_CPU_ISA=AVX512_CORE python research/isa_conv.py 3 # 3x3: jit_uni_ncsp + ref:any (slow)
    ONEDNN_MAX_CPU_ISA=AVX512_CORE python research/isa_conv.py 1 # 1x1: brg_matmul AVX-512
"""
import os, sys, time, numpy as np
import mindspore as ms
ms.set_device("CPU"); ms.set_context(mode=ms.GRAPH_MODE); ms.device_context.cpu.op_tuning.threads_num(1)
N, C, H, k = 4, 256, 28, int(sys.argv[1])
x = ms.Tensor(np.random.default_rng(0).standard_normal((N, C, H, H), dtype=np.float32))
conv = ms.nn.Conv2d(C, C, k, pad_mode="same", has_bias=False)
conv(x).asnumpy(); cs = []
for _ in range(5):
    c = time.process_time(); conv(x).asnumpy(); cs.append(time.process_time() - c)
t = sorted(cs)[2]
print(f"ISA {os.environ.get('ONEDNN_MAX_CPU_ISA','default')} k{k}: {t*1e3:.1f} ms CPU, {2*N*C*C*k*k*H*H/t/1e9:.1f} GFLOP per CPU-s")
