"""Classifier head of the model zoo's CSPDarkNet53 (``CommonHead``).

Global average pooling (a mean over H and W, no flatten layer, no dropout) followed by one
``nn.Dense(num_features, num_classes)`` with bias. The zoo always ran that Dense in float16
(``add_flags_recursive(fp16=True)``), so its logits came out as float16 even from an fp32
backbone, which its Ascend 310 post-processing relied on. Here that is an option,
``fp16_head``, off by default: training and CPU evaluation keep fp32 logits, and export can
switch it on to reproduce the zoo's float16 output.
"""
from mindspore import dtype as mstype
from mindspore import nn, ops


class CommonHead(nn.Cell):
    def __init__(self, num_features, num_classes, fp16=False):
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.fc = nn.Dense(num_features, num_classes, has_bias=True)
        if fp16:
            self.fc.to_float(mstype.float16)

    def pool(self, x):
        return ops.mean(x, (2, 3))

    def construct(self, x, pre_logits=False):
        x = self.pool(x)
        if pre_logits:
            return x
        return self.fc(x)
